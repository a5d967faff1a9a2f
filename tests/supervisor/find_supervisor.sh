#!/bin/sh
# SPDX-License-Identifier: MIT
# find_supervisor.sh SERVICE CTL: shmrpcctl finds the supervisor without being told
# (issue 15): --ini before the command, then no option at all with one supervisor running,
# a list of both and status 2 with two, and the one left after the other was SIGKILLed
# (its registry file is stale then). XDG_RUNTIME_DIR is a folder of this test's, so the
# registry holds its supervisors only. Every wait is bounded; the supervisors are stopped
# (SIGTERM, then SIGKILL) and the killed one's segments removed, even on failure.
set -u
service=$1 ctl=$2
tmp=$(mktemp -d) || exit 1
XDG_RUNTIME_DIR=$tmp/run
export XDG_RUNTIME_DIR
unset SHMRPC_CONTROL SHMRPC_INI
mkdir -m 700 "$tmp/run" "$tmp/one" "$tmp/two" || exit 1
pids=""
cleanup() {
    for p in $pids; do kill -TERM "$p" 2>/dev/null; done
    for p in $pids; do
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "$p" 2>/dev/null
    done
    [ -n "${orphan:-}" ] && [ "$orphan" -gt 1 ] && kill -KILL -- "-$orphan" 2>/dev/null
    [ -n "${hash:-}" ] && rm -f /dev/shm/*"$hash"* /dev/shm/shmrpc-"$(id -u)"/*"$hash"*
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail=0

port=$((20000 + $$ % 20000))
for d in one two; do
    port=$((port + 1)) # two pages, two ports
    cat >"$tmp/$d/service.ini" <<INI
[defaults]
log_dir = logs
[web monitor]
port = $port
[sleeper]
exec = /bin/sleep 120
wait_until_completed = false
INI
done

# start DIR: a supervisor of DIR/service.ini, once shmrpcctl --ini reaches it (20 s at most).
start() {
    "$service" --foreground "$tmp/$1/service.ini" 2>>"$tmp/$1/err" &
    pids="$pids $!"
    i=0
    until timeout -k 2 10 "$ctl" --ini "$tmp/$1/service.ini" status >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -lt 200 ] || { echo "FAIL: the supervisor of $1 did not answer"; cat "$tmp/$1/err"; exit 1; }
        sleep 0.1
    done
    last=$!
}

# expect STATUS WHERE TEXT ARGS...: shmrpcctl ARGS exits with STATUS, TEXT in std WHERE.
expect() {
    want=$1 where=$2 text=$3
    shift 3
    timeout -k 2 20 "$ctl" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    status=$?
    if [ "$status" -ne "$want" ] || ! grep -qF -- "$text" "$tmp/$where"; then
        echo "FAIL shmrpcctl $*: exit status $status (expected $want), std$where lacks: $text"
        cat "$tmp/out" "$tmp/err"
        fail=$((fail + 1))
    else
        echo "ok: shmrpcctl $*"
    fi
}

expect 2 err "which supervisor? None of yours is registered in $tmp/run/shmrpc" status
start one
one=$last
expect 0 out sleeper --ini "$tmp/one/service.ini" status
expect 0 out sleeper status
expect 0 out '"sleeper"' status --json
start two
two=$last
expect 2 err "which supervisor? 2 of yours run" status
expect 2 err "--ini $(cd "$tmp/one" && pwd -P)/service.ini  (pid $one, page http://127.0.0.1:" status
expect 2 err "--ini $(cd "$tmp/two" && pwd -P)/service.ini  (pid $two" status
expect 0 out sleeper --ini "$tmp/two/service.ini" status

# SIGKILL leaves its registry file behind: the next shmrpcctl knows it for stale.
# Its service (a process group of its own) outlives it: the test stops that too.
hash=$(timeout 10 "$ctl" status 2>&1 | sed -n "s/.*pid $two.*-a shm:\/\/shmrpc-control-\([0-9a-f]*\)).*/\1/p")
orphan=$(timeout 10 "$ctl" --ini "$tmp/two/service.ini" status --json | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p')
echo "killing supervisor $two (control ...$hash, its service $orphan)"
kill -KILL "$two"
[ -n "$orphan" ] && [ "$orphan" -gt 1 ] && kill -KILL -- "-$orphan"
i=0
while kill -0 "$two" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
expect 0 out sleeper status
[ ! -e "$tmp/run/shmrpc/$two.sup" ] || { echo "FAIL: the stale file stayed"; fail=$((fail + 1)); }

# SIGTERM: the supervisor takes its own file away.
kill -TERM "$one"
i=0
while kill -0 "$one" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
[ ! -e "$tmp/run/shmrpc/$one.sup" ] || { echo "FAIL: $one.sup stayed after SIGTERM"; fail=$((fail + 1)); }
expect 2 err "None of yours is registered" status

[ "$fail" -eq 0 ] && echo "all passed" || echo "$fail failed"
exit "$fail"
