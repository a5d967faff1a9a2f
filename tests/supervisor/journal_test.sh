#!/bin/sh
# SPDX-License-Identifier: MIT
# journal_test.sh SERVICE: shmrpc-service --foreground under systemd's journal (issue 15).
# When JOURNAL_STREAM names the file its stderr is (DEVICE:INODE), every line begins with its
# syslog priority: <6> information, <4> a warning (a crash, a restart), <3> an error (a
# service marked failed, a file with errors); otherwise lines are plain. The journal is
# played by a file of the test's. Every wait is bounded; the supervisor is stopped even on
# failure.
set -u
service=$1
tmp=$(mktemp -d) || exit 1
sup=""
cleanup() {
    if [ -n "$sup" ]; then
        kill -TERM "$sup" 2>/dev/null
        i=0
        while kill -0 "$sup" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "$sup" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
export XDG_RUNTIME_DIR="$tmp/run" # the registry of supervisors: this test's own
mkdir -m 700 "$tmp/run"
fail=0

# /bin/false crashes at once: two restarts (warnings), then marked failed (an error).
cat >"$tmp/service.ini" <<INI
[defaults]
log_dir = logs
[web monitor]
port = $((20000 + $$ % 20000))
[crasher]
exec = /bin/false
wait_until_completed = false
restart_backoff_ms = 10
crash_loop_restarts = 2
INI

# run JOURNAL: the supervisor with stderr to $tmp/err, JOURNAL naming it or not, until the
# service is marked failed (20 s at most); then SIGTERM.
run() {
    : >"$tmp/err"
    js=$(stat -c '%d:%i' "$tmp/err")
    [ "$1" = journal ] || js="1:1" # some other file
    JOURNAL_STREAM=$js "$service" --foreground "$tmp/service.ini" 2>>"$tmp/err" &
    sup=$!
    i=0
    until grep -q "marked failed" "$tmp/err"; do
        i=$((i + 1))
        [ $i -lt 200 ] || { echo "FAIL: no 'marked failed' in 20 s"; cat "$tmp/err"; break; }
        sleep 0.1
    done
    kill -TERM "$sup"
    i=0
    while kill -0 "$sup" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
    wait "$sup"
    sup=""
}

# has PATTERN WHAT: a line of $tmp/err matches the extended regex PATTERN.
has() {
    if grep -qE -- "$1" "$tmp/err"; then
        echo "ok: $2"
    else
        echo "FAIL: $2: no line matches $1"
        cat "$tmp/err"
        fail=$((fail + 1))
    fi
}

run journal
has '^<6>shmrpc-service: pid [0-9]+: 1 service from' "information is <6>"
has '^<6>shmrpc-service: crasher: started' "a start is <6>"
has '^<4>shmrpc-service: crasher: .*restarting in' "a restart is <4>"
has '^<3>shmrpc-service: crasher: .*marked failed' "marked failed is <3>"
bad=$(grep -cvE '^<[0-7]>' "$tmp/err")
[ "$bad" -eq 0 ] || { echo "FAIL: $bad lines without a priority"; cat "$tmp/err"; fail=$((fail + 1)); }

run plain
has '^shmrpc-service: crasher: .*marked failed' "plain lines without the journal"
if grep -qE '^<[0-7]>' "$tmp/err"; then
    echo "FAIL: a priority without the journal"
    fail=$((fail + 1))
fi

# A file with errors, before anything starts: each of its lines an error.
printf '[defaults]\nlog_dir = logs\n[x]\nbogus_key = 1\n' >"$tmp/bad.ini"
: >"$tmp/err"
JOURNAL_STREAM=$(stat -c '%d:%i' "$tmp/err") timeout -k 2 20 "$service" --foreground \
    "$tmp/bad.ini" 2>>"$tmp/err"
has '^<3>.*bad.ini:4:1: error' "the file's errors are <3>"
bad=$(grep -cvE '^<3>' "$tmp/err")
[ "$bad" -eq 0 ] || { echo "FAIL: $bad lines of the errors without <3>"; cat "$tmp/err"; fail=$((fail + 1)); }

[ "$fail" -eq 0 ] && echo "all passed" || echo "$fail failed"
exit "$fail"
