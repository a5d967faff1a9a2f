#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds everything (tests and benchmarks too) with gcc and clang in each build type
# (Release, MinSizeRel, RelWithDebInfo, Debug, and None as Debian's debhelper configures),
# with Debian's hardening flags from dpkg-buildflags and warnings as errors, in
# build-types/CC-TYPE/. Stops at the first that fails. Not part of scripts/test.sh (about
# ten full builds); run it before a release or after changing flags or compilers.
#   scripts/build-types.sh [CC:TYPE ...]     (default: all ten)
set -eu
cd "$(dirname "$0")/.."
command -v dpkg-buildflags >/dev/null || { echo "build-types.sh: needs dpkg-dev" >&2; exit 1; }
export DEB_BUILD_MAINT_OPTIONS=hardening=+all
cflags="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)"
ldflags=$(dpkg-buildflags --get LDFLAGS)
configs=${*:-"gcc:Release gcc:MinSizeRel gcc:RelWithDebInfo gcc:Debug gcc:None
              clang:Release clang:MinSizeRel clang:RelWithDebInfo clang:Debug clang:None"}
for cfg in $configs; do
    cc=${cfg%%:*} type=${cfg#*:}
    dir=build-types/$cc-$type
    echo "== $cc, $type: $cflags"
    CC=$cc cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" -DSHMRPC_WERROR=ON \
        -DCMAKE_C_FLAGS="$cflags" -DCMAKE_CXX_FLAGS="$cflags" \
        -DCMAKE_EXE_LINKER_FLAGS="$ldflags" -DCMAKE_SHARED_LINKER_FLAGS="$ldflags" \
        -DCMAKE_MODULE_LINKER_FLAGS="$ldflags" >/dev/null
    cmake --build "$dir" -j "$(nproc)"
done
echo "built warning-free: $configs" | tr -s ' \n' ' '
echo
