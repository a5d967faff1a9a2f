#!/bin/sh
# SPDX-License-Identifier: MIT
# The main job: generate the echo service from examples/echo/echo.svc and build it; start
# it under the supervisor (examples/echo/service.ini: over shared memory with two worker
# processes, and over TCP on loopback); call it with the echo client over both transports
# and with shmrpcctl call, which needs no generated code; show shmrpcctl status, the logs
# and where the management page is; stop the supervisor.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh demo
# Neither the tests nor the benchmarks nor the Python module: what they need is installed by
# scripts/test.sh, which configures build/ again with them (and requires Python: not here).
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHMRPC_TESTS=OFF \
    -DSHMRPC_BENCH=OFF -DCMAKE_DISABLE_FIND_PACKAGE_Python3=ON -DSHMRPC_REQUIRE_PYTHON=OFF \
    >/dev/null
cmake --build build --target shmrpcgen echo-server echo-client shmrpc-service shmrpcctl
PATH="$PWD/build/bin:$PATH"
export PATH
ini=examples/echo/service.ini

echo
echo "== shmrpcgen examples/echo/echo.svc"
out=build/demo-generated
mkdir -p "$out"
shmrpcgen -o "$out" examples/echo/echo.svc
ls -l "$out"
grep -n '^int echo_[a-z]' "$out/echo.h"

echo
echo "== shmrpc-service --foreground $ini"
shmrpc-service --foreground "$ini" &
supervisor=$!
trap 'kill "$supervisor" 2>/dev/null || true' EXIT
status=0
ready=1
for _ in $(seq 100); do # up to ten seconds for both services to answer
    running=$(shmrpcctl status --json --ini "$ini" 2>/dev/null | grep -c '"state": "running"' || true)
    if [ "$running" -eq 2 ]; then
        ready=0
        break
    fi
    sleep 0.1
done
[ "$ready" -eq 0 ] || { echo "the supervisor did not come up"; status=1; }

echo
echo "== echo-client shm://echo_serv"
echo-client shm://echo_serv || status=1
echo
echo "== echo-client tcp://127.0.0.1:5555"
echo-client tcp://127.0.0.1:5555 || status=1
echo
echo "== shmrpcctl call shm://echo_serv add '[40, 2]'"
shmrpcctl call shm://echo_serv add '[40, 2]' || status=1
echo "== shmrpcctl call tcp://127.0.0.1:5555 centroid '{\"points\": [{\"x\": 0, \"y\": 0}, {\"x\": 2, \"y\": 4}]}'"
shmrpcctl call tcp://127.0.0.1:5555 centroid '{"points": [{"x": 0, "y": 0}, {"x": 2, "y": 4}]}' ||
    status=1
echo
echo "== shmrpcctl status --ini $ini"
shmrpcctl status --ini "$ini" || status=1
echo
echo "== shmrpcctl logs echo -n 3 --ini $ini"
shmrpcctl logs echo -n 3 --ini "$ini" || status=1

echo
echo "== the management page: http://127.0.0.1:5155/ (JSON at /api/services, /metrics)"
echo "   (open it while the supervisor runs; this demo stops it next)"

echo
echo "== stopping the supervisor (SIGTERM)"
kill -TERM "$supervisor"
wait "$supervisor" || status=1
trap - EXIT
echo
echo "logs, time series and status.json: examples/echo/logs/"
exit "$status"
