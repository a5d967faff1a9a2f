#!/bin/sh
# SPDX-License-Identifier: MIT
# deb_test.sh [SOURCE_DIR]: builds the Debian packages (debian/, docs/debian.md) from a copy
# of the source tree with `dpkg-buildpackage -us -uc -b`, checks them with lintian (no
# errors), unpacks them with `dpkg-deb -x` into a throwaway root, checks what each holds, and
# builds and runs run_consumer.sh's projects (C and C++-only CMake, a pkg-config Makefile,
# against libshmrpc.so and libshmrpc.a, over shm:// and tcp://) against that root.
# Exits 77 (skipped) when debhelper is not installed.
set -eu
src=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
for p in dpkg-buildpackage dh dpkg-deb; do
    command -v $p >/dev/null || { echo "SKIP: $p not installed (apt-get install debhelper)"; exit 77; }
done
tmp=$(mktemp -d)
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() {
    echo "FAIL: $*"
    exit 1
}

# A copy: dpkg-buildpackage writes the packages beside the tree and its build into it.
mkdir "$tmp/shmrpc"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$src" ls-files -co --exclude-standard | while IFS= read -r f; do
        [ -e "$src/$f" ] && printf '%s\n' "$f"
    done | tar -C "$src" -cf - -T - | tar -C "$tmp/shmrpc" -xf -
else
    tar -C "$src" --exclude='./build*' --exclude='./obj-*' -cf - . | tar -C "$tmp/shmrpc" -xf -
fi
(cd "$tmp/shmrpc" && dpkg-buildpackage -us -uc -b >"$tmp/build.log" 2>&1) ||
    { tail -40 "$tmp/build.log"; fail "dpkg-buildpackage -us -uc -b"; }
version=$(cd "$tmp/shmrpc" && dpkg-parsechangelog -S Version)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
built=""
for deb in "$tmp"/*.deb; do
    case $deb in *-dbgsym_*) ;; *) built="$built $(basename "$deb")" ;; esac
done
echo "built:$built"

if command -v lintian >/dev/null; then
    lintian --fail-on error "$tmp/shmrpc_${version}_$arch.changes" >"$tmp/lintian.log" 2>&1 ||
        { cat "$tmp/lintian.log"; fail "lintian reports errors"; }
    echo "lintian: no errors ($(grep -c '^W:' "$tmp/lintian.log" || true) warnings)"
else
    echo "lintian not installed: not run"
fi

# contains PACKAGE PATH...: each PATH is in PACKAGE's .deb.
root=$tmp/root
contains() {
    deb=$tmp/$1_${version}_$arch.deb
    [ -f "$deb" ] || fail "no package $1"
    shift
    dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$tmp/list"
    for f in "$@"; do
        grep -qx "$f" "$tmp/list" || fail "$(basename "$deb") does not hold $f"
    done
}
lib=/usr/lib/$multiarch
contains libshmrpc0 "$lib/libshmrpc.so.0"
contains libshmrpc-dev /usr/include/shmrpc.h "$lib/libshmrpc.so" "$lib/libshmrpc.a" \
    "$lib/cmake/shmrpc/shmrpcConfig.cmake" "$lib/pkgconfig/shmrpc.pc"
contains shmrpcgen /usr/bin/shmrpcgen /usr/share/man/man1/shmrpcgen.1.gz \
    /usr/share/man/man5/shmrpc-svc.5.gz
contains shmrpc /usr/bin/shmrpc-service /usr/bin/shmrpcctl /usr/bin/shmrpc-ini-check \
    /usr/share/man/man1/shmrpc-service.1.gz /usr/share/man/man5/shmrpc-service.ini.5.gz \
    /lib/systemd/system/shmrpc-service@.service /usr/lib/sysusers.d/shmrpc.conf
dpkg-deb -f "$tmp/libshmrpc0_${version}_$arch.deb" Multi-Arch | grep -qx same ||
    fail "libshmrpc0 is not Multi-Arch: same"
# The user of the unit comes from sysusers.d in postinst; no instance of the template is
# enabled or started.
dpkg-deb -e "$tmp/shmrpc_${version}_$arch.deb" "$tmp/control"
grep -q "systemd-sysusers.*shmrpc.conf" "$tmp/control/postinst" || fail "postinst makes no user"
! grep -q "enable\|start" "$tmp/control/postinst" || fail "postinst enables or starts a unit"

for deb in "$tmp"/*.deb; do
    case $deb in *-dbgsym_*) continue ;; esac
    dpkg-deb -x "$deb" "$root"
done
echo "unpacked into a throwaway root"
grep -qx "ExecStart=/usr/bin/shmrpc-service --foreground /etc/shmrpc/%i.ini" \
    "$root/lib/systemd/system/shmrpc-service@.service" || fail "the unit does not start /usr/bin/shmrpc-service"

SHMRPC_INSTALLED_PREFIX=$root/usr sh "$src/tests/package/run_consumer.sh" \
    "$(echo "$tmp"/shmrpc/obj-*)" "$src" "${CC:-cc}" "$(dpkg-buildflags --get CFLAGS)"
