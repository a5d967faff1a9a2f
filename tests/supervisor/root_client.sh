#!/bin/sh
# SPDX-License-Identifier: MIT
# root_client.sh SERVICE CTL: a supervisor that runs as another user (nobody, uid 65534, as
# the systemd unit runs it as shmrpc) answers `shmrpcctl --ini FILE status` of its own user;
# root's is refused, shm:// serving its own user's clients only, and says which user to be
# rather than that no supervisor runs (docs/systemd.md). Needs root: exits 77 (skipped)
# without. Every wait is bounded; the supervisor is stopped (SIGTERM, then SIGKILL) even on
# failure.
set -u
service=$1 ctl=$2
[ "$(id -u)" -eq 0 ] || { echo "SKIP: a supervisor of another user needs root"; exit 77; }
command -v setpriv >/dev/null || { echo "FAIL: setpriv (util-linux) is missing"; exit 1; }
tmp=$(mktemp -d) || exit 1
chmod 755 "$tmp"
unset SHMRPC_CONTROL SHMRPC_INI
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
# exec: in the background, $! is then the program itself, not a shell around it.
as_nobody() {
    exec setpriv --reuid=65534 --regid=65534 --clear-groups env XDG_RUNTIME_DIR="$tmp/run" "$@"
}

mkdir "$tmp/logs" "$tmp/run"
chown 65534:65534 "$tmp/logs" "$tmp/run"
port=$(python3 -c \
    'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$tmp/service.ini" <<INI
[defaults]
log_dir = logs
[web monitor]
port = $port
[sleeper]
exec = /bin/sleep 60
wait_until_completed = false
INI
chmod 644 "$tmp/service.ini"
(as_nobody "$service" --foreground "$tmp/service.ini" 2>"$tmp/err") &
sup=$!
end=$(($(date +%s) + 30))
until (as_nobody timeout -k 2 5 "$ctl" --ini "$tmp/service.ini" status >"$tmp/out" 2>&1); do
    [ "$(date +%s)" -lt $end ] ||
        { echo "FAIL: the supervisor (as nobody) did not answer its user"; cat "$tmp/out" "$tmp/err"; exit 1; }
    sleep 0.1
done
grep -q "^sleeper .*running" "$tmp/out" || { echo "FAIL: status as nobody:"; cat "$tmp/out"; exit 1; }
echo "as nobody: status answers"

timeout -k 2 10 "$ctl" --ini "$tmp/service.ini" status >"$tmp/out" 2>"$tmp/root.err"
rc=$?
user=$(getent passwd 65534 | cut -d: -f1)
want="^shmrpcctl: status: the supervisor at shm://shmrpc-control-[0-9a-f]* is uid 65534's,"
want="$want and shm:// serves the clients of its own user only: run shmrpcctl as that user"
want="$want (sudo -u ${user:-#65534} shmrpcctl \.\.\.)\$"
[ $rc -eq 1 ] && [ ! -s "$tmp/out" ] && grep -q "$want" "$tmp/root.err" ||
    { echo "FAIL: status as root: exit $rc"; cat "$tmp/out" "$tmp/root.err"; exit 1; }
echo "as root: $(cat "$tmp/root.err")"
