#!/bin/sh
# SPDX-License-Identifier: MIT
# run_consumer.sh BUILD_DIR SOURCE_DIR CC [CFLAGS]: installs shmrpc from BUILD_DIR into a
# scratch prefix, checks what it installed, and builds three projects of a user's against
# it, each once with libshmrpc.so and once with libshmrpc.a, with the compiler and flags the
# library was built with: consumer/ (C, CMake: find_package(shmrpc), shmrpc_generate()),
# consumer_cxx/ (a CMake project declared LANGUAGES CXX) and consumer_make/ (a Makefile
# with pkg-config). Each one's echo server and client talk over shm:// and tcp://.
# With SHMRPC_INSTALLED_PREFIX set (deb_test.sh: the Debian packages unpacked, PREFIX/usr), it
# checks and uses that installation instead, where the docs are compressed (.gz) and the
# license is debian/copyright; BUILD_DIR is then only where echo-server is found.
set -eu
build=$1 src=$2 cc=$3 cflags=${4:-}
here=$src/tests/package
# The C++ compiler that goes with CC: gcc -> g++, clang -> clang++, cc -> c++.
cxx=$(printf '%s\n' "$cc" | sed 's/gcc\([-0-9.]*\)$/g++\1/; s/clang\([-0-9.]*\)$/clang++\1/; s/cc$/c++/')
tmp=$(mktemp -d)
tag=pkgtest$$
server=""
cleanup() {
    [ -z "$server" ] || kill -KILL "$server" 2>/dev/null || true
    rm -f /dev/shm/*"$tag"* /dev/shm/shmrpc-"$(id -u)"/*"$tag"* 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() {
    echo "FAIL: $*"
    for f in "$tmp"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done
    exit 1
}

if [ -n "${SHMRPC_INSTALLED_PREFIX:-}" ]; then
    prefix=$SHMRPC_INSTALLED_PREFIX gz=.gz license=copyright mit="^License: MIT"
else
    prefix=$tmp/prefix gz="" license=LICENSE mit="MIT License"
    cmake --install "$build" --prefix "$prefix" >/dev/null
fi
for f in bin/shmrpcgen bin/shmrpc-service bin/shmrpcctl bin/shmrpc-ini-check include/shmrpc.h \
    include/shmrpc/client.h share/doc/shmrpc/$license share/doc/shmrpc/README.md$gz \
    share/doc/shmrpc/install.md$gz; do
    [ -e "$prefix/$f" ] || fail "not installed: $f"
done
grep -q "$mit" "$prefix/share/doc/shmrpc/$license" || fail "$license: not the MIT license"
libdir=$(dirname "$(find "$prefix" -name libshmrpc.a)")
[ -f "$libdir/libshmrpc.a" ] || fail "libshmrpc.a not installed"
[ -f "$libdir/cmake/shmrpc/shmrpcConfig.cmake" ] || fail "the CMake package is not installed"
sh "$here/check_exports.sh" "$libdir/libshmrpc.so" "$prefix/include" || fail "libshmrpc.so's exports"
# (echo-server, which the example's service.ini runs, from the build)
PATH="$build/bin:$PATH" "$prefix/bin/shmrpc-ini-check" "$src/examples/echo/service.ini" >/dev/null ||
    fail "the installed shmrpc-ini-check does not run"

# pkg-config: the prefix it was installed under (an unpacked root's is /usr, read through
# PKG_CONFIG_SYSROOT_DIR, as a staged root is), the generator, and the static libraries only
# with --static.
export PKG_CONFIG_PATH="$libdir/pkgconfig"
if [ -n "${SHMRPC_INSTALLED_PREFIX:-}" ]; then
    export PKG_CONFIG_SYSROOT_DIR="${prefix%/usr}"
    grep -qx "prefix=/usr" "$libdir/pkgconfig/shmrpc.pc" || fail "shmrpc.pc: $(grep '^prefix=' "$libdir/pkgconfig/shmrpc.pc")"
else
    grep -qx "prefix=$prefix" "$libdir/pkgconfig/shmrpc.pc" || fail "shmrpc.pc: $(grep '^prefix=' "$libdir/pkgconfig/shmrpc.pc")"
fi
gen=$(pkg-config --variable=shmrpcgen shmrpc)
[ -x "$gen" ] || fail "pkg-config --variable=shmrpcgen shmrpc: '$gen' is not a program"
libs=$(pkg-config --libs shmrpc)
static_libs=$(pkg-config --static --libs shmrpc)
case " $libs " in *" -ljansson "*) fail "pkg-config --libs lists private libraries: $libs" ;; esac
case " $static_libs " in *" -ljansson "*) ;; *) fail "pkg-config --static --libs: $static_libs" ;; esac
case " $static_libs " in *msgpackc*) fail "-lmsgpackc though nothing uses it: $static_libs" ;; esac
echo "installed: programs, headers, both libraries, CMake and pkg-config packages, docs"

# check_link PROGRAM shared|static: whether PROGRAM needs libshmrpc.so.
check_link() {
    if readelf -d "$1" | grep -q "NEEDED.*libshmrpc\.so"; then
        [ "$2" = shared ] || fail "$1 needs libshmrpc.so though linked with the static library"
    else
        [ "$2" = static ] || fail "$1 does not need libshmrpc.so though linked with it"
    fi
}

# run_pair NAME 'SERVER...' 'CLIENT...': for shm:// and tcp://, starts SERVER ADDRESS, runs
# CLIENT ADDRESS until the server answers (bounded), checks the sum, stops the server.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run_pair() {
    for addr in "shm://${tag}_$1" "tcp://127.0.0.1:$port"; do
        # shellcheck disable=SC2086
        $2 "$addr" >>"$tmp/server.log" 2>&1 &
        server=$!
        tries=0
        # shellcheck disable=SC2086
        until $3 "$addr" >"$tmp/client.out" 2>>"$tmp/client.log"; do
            tries=$((tries + 1))
            [ $tries -lt 50 ] || fail "$1: $3 $addr: no answer"
            kill -0 "$server" 2>/dev/null || fail "$1: $2 $addr exited"
            sleep 0.2
        done
        grep -q "^add(40, 2) = 42$" "$tmp/client.out" || fail "$1: $3 $addr: wrong answer"
        kill -TERM "$server"
        wait "$server" || fail "$1: $2 $addr: exit status $?"
        server=""
        echo "$1: called over $addr"
    done
}

for link in shared static; do
    static=OFF
    [ $link = static ] && static=ON

    cmake -S "$here/consumer" -B "$tmp/c-$link" -DCMAKE_PREFIX_PATH="$prefix" \
        -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$cflags" -DSHMRPC_USE_STATIC_LIBS=$static \
        -DECHO_DIR="$src/examples/echo" >"$tmp/build.log" 2>&1 || fail "consumer: cmake"
    cmake --build "$tmp/c-$link" >>"$tmp/build.log" 2>&1 || fail "consumer: build"
    check_link "$tmp/c-$link/echo-server" $link
    run_pair "c-cmake-$link" "$tmp/c-$link/echo-server" "$tmp/c-$link/echo-client"

    cmake -S "$here/consumer_cxx" -B "$tmp/cxx-$link" -DCMAKE_PREFIX_PATH="$prefix" \
        -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_C_FLAGS="$cflags" \
        -DCMAKE_CXX_FLAGS="$cflags" -DSHMRPC_USE_STATIC_LIBS=$static \
        -DECHO_DIR="$src/examples/echo" >"$tmp/build.log" 2>&1 || fail "consumer_cxx: cmake"
    cmake --build "$tmp/cxx-$link" >>"$tmp/build.log" 2>&1 || fail "consumer_cxx: build"
    check_link "$tmp/cxx-$link/echo-cxx" $link
    run_pair "cxx-cmake-$link" "$tmp/cxx-$link/echo-cxx serve" "$tmp/cxx-$link/echo-cxx call"

    mkdir "$tmp/make-$link"
    cp "$here/consumer_make/Makefile" "$tmp/make-$link/"
    mk_static=""
    [ $link = static ] && mk_static=1
    make -C "$tmp/make-$link" CC="$cc" CFLAGS="$cflags" ECHO_DIR="$src/examples/echo" \
        STATIC=$mk_static >"$tmp/build.log" 2>&1 || fail "consumer_make: make"
    check_link "$tmp/make-$link/echo-server" $link
    run_pair "make-pkgconfig-$link" "$tmp/make-$link/echo-server" "$tmp/make-$link/echo-client"
done
echo "consumers built with CMake (C, C++ only) and pkg-config, against both libraries, and ran"
