#!/bin/sh
# run_consumer.sh BUILD_DIR SOURCE_DIR CC [CFLAGS]: installs shmrpc from BUILD_DIR into a
# scratch prefix, builds tests/package/consumer against it with find_package(shmrpc) and
# shmrpc_generate() using the compiler and flags the library was built with, and runs it.
set -eu
build=$1 src=$2 cc=$3 cflags=${4:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S "$src/tests/package/consumer" -B "$tmp/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$cflags" -DECHO_DIR="$src/examples/echo" >/dev/null
cmake --build "$tmp/build" >/dev/null
"$tmp/build/echo-consumer" | tee "$tmp/out"
grep -q "^add(40, 2) = 42$" "$tmp/out"
echo "consumer built with find_package(shmrpc) and ran"

# The same without CMake: the installed shmrpcgen and pkg-config's shmrpc.pc.
gen="$tmp/pc"
mkdir -p "$gen"
"$tmp/prefix/bin/shmrpcgen" -o "$gen" "$src/examples/echo/echo.svc"
pc=$(find "$tmp/prefix" -name shmrpc.pc)
flags=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags --libs shmrpc)
# shellcheck disable=SC2086
"$cc" $cflags -Wall -Wextra -Werror -I"$gen" -I"$src/examples/echo" -o "$gen/echo-pc" \
    "$src/examples/echo/echo_inproc.c" "$src/examples/echo/echo_handlers.c" \
    "$src/examples/echo/echo_calls.c" "$gen"/echo*.c $flags
"$gen/echo-pc" | grep -q "^add(40, 2) = 42$"
echo "consumer built with pkg-config (shmrpc.pc) and ran"
