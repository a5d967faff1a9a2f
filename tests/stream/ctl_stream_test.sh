#!/bin/sh
# SPDX-License-Identifier: MIT
# ctl_stream_test.sh CTL STREAM_SERVER GATHER_SERVER: shmrpcctl call of a method whose result
# streams (docs/streams.md), against stream-server over shm:// and then over tcp://: one line
# of JSON an item, each as it comes, then status 0 at the end; a handler that fails
# mid-stream, an item that does not decode, and the deadline: the items that came, then the
# failure on stderr and status 1. Then of a method whose parameter streams, against
# gather-server: its items from stdin, one JSON value a line (blank lines passed
# over), then its answer; a line that is no item (status 2, naming it), a handler that
# answers early or fails, the deadline while the handler reads nothing, arguments given;
# and of a method that streams both ways, whose items print as they come while stdin's are
# sent (its deadline ends it while stdin stays open); over shm:// and then over tcp://. Every wait is bounded;
# each server is stopped (SIGTERM, then SIGKILL) and its segments removed, even on failure.
set -u
ctl=$1 server=$2 gather=$3
tmp=$(mktemp -d) || exit 1
addr=""
pid=""
# stop: the server at $addr, if one runs, and its segments.
stop() {
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "$pid" 2>/dev/null
        pid=""
    fi
    [ -n "$addr" ] && "$ctl" clean "$addr" >/dev/null 2>&1
}
cleanup() {
    stop
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail=0

# start ADDR [SERVER]: stream-server (or SERVER) at ADDR, once it answers.
start() {
    addr=$1
    "${2:-$server}" "$addr" >"$tmp/server.out" 2>&1 &
    pid=$!
    i=0
    until "$ctl" health --timeout 200 "$addr" >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || { echo "FAIL: stream-server exited"; cat "$tmp/server.out"; exit 1; }
        i=$((i + 1))
        [ $i -lt 100 ] || { echo "FAIL: stream-server at $addr did not serve"; exit 1; }
        sleep 0.1
    done
}

# expect STATUS STDOUT STDERR ARGS...: shmrpcctl ARGS, given $tmp/in on stdin, exits with
# STATUS, printing STDOUT and STDERR (each whole).
: >"$tmp/in"
expect() {
    want=$1 out=$2 err=$3
    shift 3
    timeout 30 "$ctl" "$@" <"$tmp/in" >"$tmp/out" 2>"$tmp/err"
    st=$?
    if [ $st != "$want" ] || [ "$(cat "$tmp/out")" != "$out" ] || [ "$(cat "$tmp/err")" != "$err" ]; then
        echo "FAIL: shmrpcctl $*: status $st (want $want), printed:"
        cat "$tmp/out"
        echo "and on stderr:"
        cat "$tmp/err"
        echo "wanted:"
        echo "$out"
        echo "and on stderr:"
        echo "$err"
        fail=1
    fi
}

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The same calls over each transport (the loop's body is not indented: the lines it expects
# are written whole).
for where in "shm://ctlstream-$$" "tcp://127.0.0.1:$port"; do
start "$where"
expect 0 '{"at":0,"note":"tick 0","seen":[]}
{"at":1,"note":"tick 1","seen":[10]}
{"at":2,"note":"tick 2","seen":[20,21]}' "" call "$addr" ticks '[3, -1, 0]'
expect 0 "" "" call "$addr" ticks '{"n": 0, "fail_after": -1, "fail": 0}'
expect 0 '"aaaa"
"bbbb"' "" call "$addr" chunks '["2 4"]'
expect 1 '{"at":0,"note":"tick 0","seen":[]}
{"at":1,"note":"tick 1","seen":[10]}' "shmrpcctl: ticks: the handler failed: failed after 2" \
    call "$addr" ticks '[5, 2, -6]'
expect 1 '{"at":0,"note":"tick 0","seen":[]}' \
    "shmrpcctl: ticks: item: invalid msgpack byte" \
    call "$addr" ticks '[5, 1, 1]'
expect 2 "" "shmrpcctl: ticks: argument 'n': expected an integer (i64), got \"x\"" \
    call "$addr" ticks '["x", 1, 1]'

# The deadline bounds the whole stream: the items until then, then the status.
timeout 30 "$ctl" call --timeout 300 "$addr" forever '[0]' >"$tmp/out" 2>"$tmp/err"
st=$?
if [ $st != 1 ] || ! grep -q "^shmrpcctl: forever: timed out" "$tmp/err" ||
    [ "$(head -n 3 "$tmp/out" | tr '\n' ' ')" != "0 1 2 " ]; then
    echo "FAIL: call --timeout 300 forever: status $st, stderr:"
    cat "$tmp/err"
    head -n 3 "$tmp/out"
    fail=1
fi
stop
done

# A streamed parameter: its items from stdin, over each transport.
for where in "shm://ctlgather-$$" "tcp://127.0.0.1:$port"; do
start "$where" "$gather"
printf '{"n": 1, "note": "a"}\n\n{"n": 2, "note": ""}\n  \n{"n": 39, "note": "b"}\n' >"$tmp/in"
expect 0 '{"sum":42,"count":3,"notes":["a","b"]}' "" call "$addr" sum
expect 0 '{"sum":42,"count":3,"notes":["a","b"]}' "" call "$addr" sum '[]'
printf '"ab"\n{"base64": "AAE="}\n' >"$tmp/in"
expect 0 '"ab\u0000\u0001"' "" call "$addr" concat
printf '1\n2\n' >"$tmp/in"
expect 0 'null' "" call "$addr" drain
: >"$tmp/in"
expect 0 '{"sum":0,"count":0,"notes":[]}' "" call "$addr" sum
printf '{"n": 1, "note": "a"}\n{"n": "x", "note": ""}\n{"n": 2, "note": ""}\n' >"$tmp/in"
expect 2 "" "shmrpcctl: sum: stdin, line 2: item.n: expected an integer (i64), got \"x\"" \
    call "$addr" sum
# An answer before the last line: the lines after it are not sent (more than the window holds).
{ echo '{"n": 1, "note": "enough"}'; seq 1 20000 | awk '{ print "{\"n\": 2, \"note\": \"\"}" }'; } >"$tmp/in"
expect 0 '{"sum":1,"count":1,"notes":[]}' "" call "$addr" sum
printf '{"n": 1, "note": ""}\n{"n": 2, "note": "fail"}\n{"n": 3, "note": ""}\n' >"$tmp/in"
expect 1 "" "shmrpcctl: sum: already in use: told to fail at part 2" call "$addr" sum
expect 2 "" "shmrpcctl: sum: arguments: sum's parameter 'parts' streams: its open takes no arguments (its items are sent one by one)" \
    call "$addr" sum '[3]'
expect 2 "" "shmrpcctl: sum: the method takes its items from stdin, not its arguments ('-')" \
    call "$addr" sum -
# Both ways: the items from stdin sent from a thread of their own while the answers print,
# each as it comes; more than each way's room holds, in order.
printf '1\n\n2\n3\n' >"$tmp/in"
expect 0 '2
4
6' "" call "$addr" doubled
seq 1 20000 >"$tmp/in"
expect 0 "$(seq 2 2 40000)" "" call "$addr" doubled
# A handler that returns (at -1) before stdin's last line: the lines after it are not sent,
# however many.
{ echo 1; echo 2; echo -1; seq 1 20000; } >"$tmp/in"
expect 0 '2
4' "" call "$addr" doubled
: >"$tmp/in"
expect 0 "" "" call "$addr" doubled
printf 'x\n1\n' >"$tmp/in"
expect 2 "" "shmrpcctl: doubled: stdin, line 1: item: bad JSON at line 1, column 1: invalid token near 'x'" \
    call "$addr" doubled
# The items' end does not wait for stdin's: here the deadline, while stdin stays open.
rm -f "$tmp/fifo"
mkfifo "$tmp/fifo"
"$ctl" call --timeout 1000 "$addr" doubled <"$tmp/fifo" >"$tmp/out" 2>"$tmp/err" &
ctlpid=$!
exec 3>"$tmp/fifo"
echo 1 >&3
i=0
while kill -0 $ctlpid 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 $ctlpid 2>/dev/null; then
    echo "FAIL: call doubled with stdin open: still running after 10 s"
    kill -KILL $ctlpid
    fail=1
fi
wait $ctlpid
st=$?
exec 3>&-
# (The handler's read ends at the same deadline: its status may come first, with its words.)
if [ $st != 1 ] || [ "$(cat "$tmp/out")" != 2 ] || [ "$(wc -l <"$tmp/err")" != 1 ] ||
    ! grep -q "^shmrpcctl: doubled: timed out: " "$tmp/err"; then
    echo "FAIL: call --timeout 1000 doubled with stdin open: status $st, printed:"
    cat "$tmp/out"
    echo "and on stderr:"
    cat "$tmp/err"
    fail=1
fi
# More than the window holds, in order.
seq 1 20000 | awk '{ print "{\"n\": " $1 ", \"note\": \"\"}" }' >"$tmp/in"
expect 0 '{"sum":200010000,"count":20000,"notes":[]}' "" call "$addr" sum
# A handler that reads nothing: the sends wait once the window is full, until the deadline
# (2 s: the open must come first, on a loaded machine too). The handler's own wait ends at
# the same deadline, and its answer may come before the client's wait ends: the send then
# ends the sends, and the answer is the handler's "timed out". Either says the deadline.
yes 1 | timeout 30 "$ctl" call --timeout 2000 "$addr" deaf >"$tmp/out" 2>"$tmp/err"
st=$?
if [ $st != 1 ] || [ -s "$tmp/out" ] || [ "$(wc -l <"$tmp/err")" != 1 ] ||
    ! grep -q -e "^shmrpcctl: deaf: stdin, line [0-9]*: the stream's deadline passed\$" \
        -e "^shmrpcctl: deaf: timed out: " "$tmp/err"; then
    echo "FAIL: call --timeout 2000 deaf: status $st, stderr:"
    cat "$tmp/err"
    fail=1
fi
stop
done

[ $fail = 0 ] && echo "ctl_stream_test: ok"
exit $fail
