#!/bin/sh
# The main job: generate the echo service from examples/echo/echo.svc, build it, start
# its server with two worker processes, call every method over shared memory, stop the
# server; then the same calls over TCP on loopback.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target shmrpcgen echo-server echo-client
echo
echo "== shmrpcgen examples/echo/echo.svc"
out=build/demo-generated
mkdir -p "$out"
build/bin/shmrpcgen -o "$out" examples/echo/echo.svc
ls -l "$out"
grep -n '^int echo_[a-z]' "$out/echo.h"

echo
echo "== build/bin/echo-server --workers 2 shm://echo_serv"
build/bin/echo-server --workers 2 shm://echo_serv &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
echo
echo "== build/bin/echo-client shm://echo_serv"
status=1
for _ in $(seq 50); do # the server may still be starting: up to five seconds
    if build/bin/echo-client shm://echo_serv 2>/tmp/echo-client.err.$$; then
        status=0
        break
    fi
    sleep 0.1
done
[ "$status" -eq 0 ] || cat /tmp/echo-client.err.$$
rm -f /tmp/echo-client.err.$$
kill -TERM "$server"
wait "$server" || status=1

echo
echo "== the same client over TCP: build/bin/echo-server tcp://127.0.0.1:5555"
build/bin/echo-server tcp://127.0.0.1:5555 &
server=$!
tcp_status=1
for _ in $(seq 50); do
    if build/bin/echo-client tcp://127.0.0.1:5555 2>/tmp/echo-client.err.$$ | grep '^add'; then
        tcp_status=0
        break
    fi
    sleep 0.1
done
[ "$tcp_status" -eq 0 ] || cat /tmp/echo-client.err.$$
rm -f /tmp/echo-client.err.$$
kill -TERM "$server"
wait "$server" || tcp_status=1
trap - EXIT
[ "$tcp_status" -eq 0 ] || status=1
echo
echo "(the management web page comes with the supervisor: not built yet)"
exit "$status"
