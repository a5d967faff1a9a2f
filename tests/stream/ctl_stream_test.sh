#!/bin/sh
# SPDX-License-Identifier: MIT
# ctl_stream_test.sh CTL STREAM_SERVER: shmrpcctl call of a method whose result streams
# (docs/streams.md), against stream-server over shm:// and then over tcp://: one line of JSON
# an item, each as it comes, then status 0 at the end; a handler that fails mid-stream, an
# item that does not decode, and the deadline: the items that came, then the failure on
# stderr and status 1. Every wait is bounded; each server is stopped (SIGTERM, then SIGKILL)
# and its segments removed, even on failure.
set -u
ctl=$1 server=$2
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

# start ADDR: stream-server at ADDR, once it answers.
start() {
    addr=$1
    "$server" "$addr" >"$tmp/server.out" 2>&1 &
    pid=$!
    i=0
    until "$ctl" health --timeout 200 "$addr" >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || { echo "FAIL: stream-server exited"; cat "$tmp/server.out"; exit 1; }
        i=$((i + 1))
        [ $i -lt 100 ] || { echo "FAIL: stream-server at $addr did not serve"; exit 1; }
        sleep 0.1
    done
}

# expect STATUS STDOUT STDERR ARGS...: shmrpcctl ARGS exits with STATUS, printing STDOUT and
# STDERR (each whole).
expect() {
    want=$1 out=$2 err=$3
    shift 3
    timeout 30 "$ctl" "$@" >"$tmp/out" 2>"$tmp/err"
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

[ $fail = 0 ] && echo "ctl_stream_test: ok"
exit $fail
