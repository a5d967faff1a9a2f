#!/bin/sh
# SPDX-License-Identifier: MIT
# exec_scale.sh SERVICE CTL ECHO_SERVER: exec= services scale like module= services when
# their program is a server built on libshmrpc (issue 15). echo-server starts with 3
# workers, idle: the supervisor's CPU rule takes it down to min_proc_num (2) within a few
# short windows; shmrpcctl scale then sets 4. A program that does not serve through the
# library (sleep) is left alone: scale is refused and SIGRTMIN never kills it. Every wait is
# bounded; the supervisor is stopped even on failure, and with it its services.
set -u
service=$1 ctl=$2 echo_server=$3
tmp=$(mktemp -d) || exit 1
export XDG_RUNTIME_DIR="$tmp/run" # the registry of supervisors: this test's own
mkdir -m 700 "$tmp/run"
unset SHMRPC_CONTROL SHMRPC_INI
sup=""
cleanup() {
    if [ -n "$sup" ]; then
        kill -TERM "$sup" 2>/dev/null
        i=0
        while kill -0 "$sup" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "$sup" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail=0
name=exec-scale-$$

cat >"$tmp/service.ini" <<INI
[defaults]
log_dir = logs
[web monitor]
port = $((20000 + $$ % 20000))
[echo]
exec = $echo_server --workers 3 shm://$name
shm_name = $name
min_proc_num = 2
max_proc_num = 4
scale_down_window_s = 2
scale_down_cpu_percent = 100
scale_up_cpu_percent = 100
[sleeper]
exec = /bin/sleep 300
wait_until_completed = false
INI

"$service" --foreground "$tmp/service.ini" 2>"$tmp/err" &
sup=$!

# workers SERVICE: the workers status --json shows for it ("" when it cannot say)
workers() {
    timeout -k 2 20 "$ctl" --ini "$tmp/service.ini" status --json 2>/dev/null |
        tr -d ' \n' | sed -n "s/.*\"name\":\"$1\",[^}]*\"workers\":\([0-9]*\).*/\1/p"
}

# until_workers SERVICE N SECONDS: waits for the count; false after SECONDS
until_workers() {
    i=0
    while [ "$(workers "$1")" != "$2" ]; do
        kill -0 "$sup" 2>/dev/null || return 1
        i=$((i + 1))
        [ $i -lt $(($3 * 5)) ] || return 1
        sleep 0.2
    done
}

# until_said PATTERN SECONDS: waits for a line of the supervisor's stderr; false after SECONDS
until_said() {
    i=0
    until grep -q "$1" "$tmp/err"; do
        i=$((i + 1))
        [ $i -lt $(($2 * 5)) ] || return 1
        sleep 0.2
    done
}

# The scale-down is said first, then the count is looked for: while echo-server forks its 3
# workers, status shows 1, then 2, then 3 of them, and a count of 2 seen then is no scaling.
until_said "echo: follows the supervisor's worker count" 60 ||
    { echo "FAIL: no 'follows' line"; fail=$((fail + 1)); }
until_said "echo: CPU of all workers .* under scale_down_cpu_percent 100: 2 workers" 60 ||
    { echo "FAIL: no scale-down line"; fail=$((fail + 1)); }
if until_workers echo 2 60; then
    echo "ok: idle, the supervisor took echo from 3 workers to min_proc_num 2"
else
    echo "FAIL: echo has $(workers echo) workers, not 2"
    fail=$((fail + 1))
fi

timeout -k 2 20 "$ctl" --ini "$tmp/service.ini" scale echo 4 >"$tmp/out" 2>&1 ||
    { echo "FAIL: scale echo 4: $(cat "$tmp/out")"; fail=$((fail + 1)); }
if until_workers echo 4 30; then
    echo "ok: shmrpcctl scale echo 4"
else
    echo "FAIL: after scale echo 4, $(workers echo) workers"
    fail=$((fail + 1))
fi

timeout -k 2 20 "$ctl" --ini "$tmp/service.ini" scale sleeper 2 >"$tmp/out" 2>&1
st=$?
if [ "$st" -eq 1 ] && grep -q "does not follow a worker count" "$tmp/out"; then
    echo "ok: scale of a program not on the library is refused"
else
    echo "FAIL: scale sleeper: status $st: $(cat "$tmp/out")"
    fail=$((fail + 1))
fi
timeout -k 2 20 "$ctl" --ini "$tmp/service.ini" status >"$tmp/out" 2>&1
grep -q "^sleeper *running" "$tmp/out" ||
    { echo "FAIL: sleeper is not running: $(cat "$tmp/out")"; fail=$((fail + 1)); }

[ "$fail" -eq 0 ] && echo "all passed" || { echo "$fail failed"; cat "$tmp/err"; }
exit "$fail"
