#!/bin/sh
# SPDX-License-Identifier: MIT
# fifo_inputs.sh SERVICE INI_CHECK SHMRPCGEN ECHO_SERVER: every file the programs read or
# write because a user named it, given as a FIFO. open() of a FIFO waits for its other end,
# forever if none comes (issue 11): each program must refuse it at once, naming the path,
# with exit status 1. Each run is bounded by timeout(1), SIGKILL after SIGTERM (the supervisor
# blocks SIGTERM for its signalfd), so a hang is a failure, not a hang.
set -u
service=$1 ini_check=$2 gen=$3 echo_server=$4
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0

# expect STATUS MESSAGE CMD...: CMD exits with STATUS within 20 s, MESSAGE in its stderr.
expect() {
    want=$1 msg=$2
    shift 2
    (cd "$tmp" && exec timeout -k 5 20 "$@") >"$tmp/out" 2>"$tmp/err" </dev/null
    status=$?
    if [ "$status" -ne "$want" ]; then
        echo "FAIL $*: exit status $status, expected $want"
        cat "$tmp/err"
        fail=$((fail + 1))
    elif ! grep -qF -- "$msg" "$tmp/err"; then
        echo "FAIL $*: stderr lacks: $msg"
        cat "$tmp/err"
        fail=$((fail + 1))
    else
        echo "ok: $*"
    fi
}

mkfifo "$tmp/f.ini" "$tmp/f.svc" "$tmp/f.secret" || exit 1
expect 1 "f.ini: error: cannot read: a FIFO, not a regular file" "$service" --foreground f.ini
expect 1 "f.ini: error: cannot read: a FIFO, not a regular file" "$ini_check" f.ini
expect 1 "f.svc: error: cannot read: a FIFO, not a regular file" "$gen" f.svc -o "$tmp/gen"

mkdir "$tmp/logs"
cat >"$tmp/secret.ini" <<INI
[defaults]
log_dir = logs
tcp_bind = 0.0.0.0
secret_file = f.secret
[e]
exec = $echo_server shm://fifo-inputs-$$
wait_until_completed = false
INI
expect 1 "secret_file: the secret file $tmp/f.secret is a FIFO, not a regular file" \
    "$ini_check" secret.ini

# A FIFO in the place of a service's log, then of the supervisor's own.
cat >"$tmp/log.ini" <<INI
[defaults]
log_dir = logs
[e]
exec = $echo_server shm://fifo-inputs-$$
wait_until_completed = false
INI
real=$(cd "$tmp" && pwd -P)
mkfifo "$tmp/logs/e.log"
expect 1 "e: cannot open its log $real/logs/e.log: a FIFO, not a regular file" \
    "$service" --foreground log.ini
rm "$tmp/logs/e.log"
mkfifo "$tmp/logs/shmrpc-service.log"
expect 1 "cannot open $real/logs/shmrpc-service.log: a FIFO, not a regular file" "$service" log.ini

[ "$fail" -eq 0 ]
