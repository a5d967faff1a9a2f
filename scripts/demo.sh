#!/bin/sh
# The main job: generate the echo service from examples/echo/echo.svc, build it, and call
# every method of it over the in-process transport.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target shmrpcgen echo-inproc
echo
echo "== shmrpcgen examples/echo/echo.svc"
out=build/demo-generated
mkdir -p "$out"
build/bin/shmrpcgen -o "$out" examples/echo/echo.svc
ls -l "$out"
grep -n '^int echo_[a-z]' "$out/echo.h"
echo
echo "== build/bin/echo-inproc"
build/bin/echo-inproc
