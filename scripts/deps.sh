#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs the Debian packages shmrpc needs, when any is missing, and says how far it is.
#     sh scripts/deps.sh demo   what scripts/demo.sh builds with (fourteen packages, with
#                               what they need)
#     sh scripts/deps.sh        that, and what the tests, the benchmarks, the fuzzers and
#                               the packages are built and run with (about a thousand)
# The demo's: the compilers and build tools, re2c and lemon for the .svc front end, and the
# libraries libshmrpc and the supervisor link (msgpack-c, jansson, snappy, zlib, libsodium,
# OpenSSL's libssl for TLS over tcp://, civetweb for the management page).
# The rest: clang (the ASan and UBSan build and the fuzzers, with libclang-rt); cmocka (the
# unit tests); the openssl program (the TLS tests' certificates); chromium, nodejs and npm
# (the browser test, tests/browser); redis-server, a baseline of shmrpc-bench-map (which
# skips its rows when it is missing); g++ and libboost-dev, the boost-mq baseline of
# shmrpc-bench-queue (bench/boost_mq.cpp); scdoc, the man pages (docs/man; without it they
# are left out); python3-dev and python3-pytest, the Python module and its tests (python/,
# tests/python); debhelper, dh-python (dh_python3) and lintian, the Debian packages
# (tests/package/deb_test.sh, skipped without them); iproute2's `ip`, the network namespaces
# of the three-hosts test (tests/hosts/hosts.sh); systemd's systemd-analyze, the unit's check
# (tests/systemd/unit_check.sh, skipped without it); gcovr, the coverage report of
# scripts/coverage.sh, and acl's setfacl, which lets the processes of other users there write
# their counts.
set -eu
demo="build-essential cmake ninja-build pkg-config gcc re2c lemon libmsgpack-dev libjansson-dev
      libsnappy-dev zlib1g-dev libsodium-dev libssl-dev libcivetweb-dev"
rest="g++ clang libclang-rt-14-dev libcmocka-dev openssl libboost-dev chromium nodejs npm
      redis-server scdoc python3-dev python3-pytest debhelper dh-python lintian iproute2 systemd
      gcovr acl"
case "${1:-all}" in
demo) pkgs=$demo ;;
all) pkgs="$demo $rest" ;;
*) echo "usage: deps.sh [demo]" >&2; exit 2 ;;
esac
missing=""
for p in $pkgs; do
    # A node from elsewhere (NodeSource's nodejs brings its own npm and conflicts with
    # Debian's) is as good as Debian's.
    case $p in
    nodejs) command -v node >/dev/null && continue ;;
    npm) command -v npm >/dev/null && continue ;;
    esac
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "deps.sh: installing$missing, with what they need (apt-get; a first run takes minutes)"
$sudo apt-get update -qq
# apt-get runs in the background, its output in a file; every 10 s a line says how many
# packages it has fetched and set up, and when it fails, its last lines say why. Ctrl-C
# stops it too. DEBIAN_FRONTEND through env: sudo drops the variables it is given.
log=$(mktemp)
# shellcheck disable=SC2086
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >"$log" 2>&1 &
apt=$!
trap 'kill "$apt" 2>/dev/null; rm -f "$log"; exit 130' INT TERM
ticks=0
while [ -d "/proc/$apt" ]; do
    sleep 1
    ticks=$((ticks + 1))
    [ $((ticks % 10)) -eq 0 ] && [ -d "/proc/$apt" ] &&
        echo "deps.sh: $(grep -c '^Get:' "$log" || true) fetched, $(grep -c '^Setting up' "$log" || true) set up"
done
if ! wait "$apt"; then
    tail -n 20 "$log" >&2
    rm -f "$log"
    echo "deps.sh: apt-get install failed" >&2
    exit 1
fi
trap - INT TERM
echo "deps.sh: done, $(grep -c '^Setting up' "$log" || true) packages set up"
rm -f "$log"
