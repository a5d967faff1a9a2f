#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs the Debian packages shmrpc builds, tests and fuzzes with, when any is missing.
# libssl-dev is TLS over tcp://; the openssl program makes the TLS tests' certificates.
# chromium, nodejs and npm run the browser test (tests/browser); redis-server is a baseline of
# shmrpc-bench-map (which skips its rows when it is missing); g++ and libboost-dev build the
# boost-mq baseline of shmrpc-bench-queue (bench/boost_mq.cpp); scdoc builds the man pages
# (docs/man; without it they are left out); python3-dev and python3-pytest build and test the
# Python module (python/, tests/python); debhelper and lintian build and check the Debian
# packages (tests/package/deb_test.sh, which is skipped without them), and build-essential,
# which dpkg-buildpackage requires of every build and which brings make for the pkg-config
# Makefile consumer (tests/package/consumer_make); iproute2's `ip` makes the network
# namespaces of the three-hosts test (tests/hosts/hosts.sh); systemd's systemd-analyze checks the
# unit (tests/systemd/unit_check.sh, which is skipped without it); gcovr reports the coverage
# of scripts/coverage.sh, and acl's setfacl lets the processes of other users there write
# their counts.
set -eu
pkgs="build-essential cmake ninja-build pkg-config gcc g++ clang libclang-rt-14-dev re2c lemon libmsgpack-dev
      libjansson-dev libcmocka-dev libsnappy-dev zlib1g-dev libsodium-dev libssl-dev openssl libcivetweb-dev
      libboost-dev chromium nodejs npm redis-server scdoc python3-dev python3-pytest debhelper
      lintian iproute2 systemd gcovr acl"
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
echo "installing:$missing"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
