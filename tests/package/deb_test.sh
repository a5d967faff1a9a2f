#!/bin/sh
# SPDX-License-Identifier: MIT
# deb_test.sh [SOURCE_DIR]: builds the Debian packages (debian/, docs/debian.md) from a copy
# of the source tree with `dpkg-buildpackage -us -uc -b`, checks them with lintian (no
# errors), unpacks them with `dpkg-deb -x` into a throwaway root, checks what each holds,
# imports the Python module from that root, and builds and runs run_consumer.sh's projects (C and C++-only CMake, a pkg-config Makefile,
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
# The user's docs and the examples, uncompressed, as a project that builds (below).
dev=/usr/share/doc/libshmrpc-dev
contains libshmrpc-dev $dev/tutorial.md.gz $dev/svc-language.md.gz $dev/install.md.gz \
    $dev/README.md.gz $dev/examples/CMakeLists.txt $dev/examples/echo/echo.svc \
    $dev/examples/echo/echo_server.c $dev/examples/echo/CMakeLists.txt \
    $dev/examples/cache/cache.svc $dev/examples/pipeline/pipeline_node.c
contains shmrpcgen /usr/bin/shmrpcgen /usr/share/man/man1/shmrpcgen.1.gz \
    /usr/share/man/man5/shmrpc-svc.5.gz
contains shmrpc /usr/bin/shmrpc-service /usr/bin/shmrpcctl /usr/bin/shmrpc-ini-check \
    /usr/share/man/man1/shmrpc-service.1.gz /usr/share/man/man5/shmrpc-service.ini.5.gz \
    /lib/systemd/system/shmrpc-service@.service /usr/lib/sysusers.d/shmrpc.conf
# The Python module where Debian's python3 finds modules, its extension named for the ABI
# of the python3 it was built for, and a dependency on that python3.
py=/usr/lib/python3/dist-packages/shmrpc
soabi=$(/usr/bin/python3 -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
contains python3-shmrpc "$py/__init__.py" "$py/_shmrpc$soabi" "$py/dict.py" "$py/methods.py" \
    "$py/_svcgen.py" "$py/svc.py" "$py/service.py" "${py%/shmrpc}/speedysvc/__init__.py" \
    "${py%/shmrpc}/speedysvc/service.py"
dpkg-deb -f "$tmp/python3-shmrpc_${version}_$arch.deb" Depends | grep -q "python3 (>= " ||
    fail "python3-shmrpc does not depend on python3"
# dh_python3's: the module is compiled when installed and its .pyc removed when it is.
dpkg-deb -e "$tmp/python3-shmrpc_${version}_$arch.deb" "$tmp/python3-control"
grep -q "py3compile -p python3-shmrpc" "$tmp/python3-control/postinst" || fail "python3-shmrpc's postinst runs no py3compile"
grep -q "py3clean -p python3-shmrpc" "$tmp/python3-control/prerm" || fail "python3-shmrpc's prerm runs no py3clean"
# python3 -m speedysvc.service runs shmrpc-service, which the shmrpc package holds.
dpkg-deb -f "$tmp/python3-shmrpc_${version}_$arch.deb" Recommends | grep -qw shmrpc ||
    fail "python3-shmrpc does not recommend shmrpc (shmrpc-service)"
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

# The module imports from the unpacked tree (not from a build tree or /usr/local), and its
# C part works: a typed queue both ways, a call to nobody raising shmrpc.Unavailable.
PYTHONPATH=$root${py%/shmrpc} PYTHONNOUSERSITE=1 /usr/bin/python3 - "$root" <<'EOF' ||
import os, sys
import shmrpc
assert shmrpc.__file__.startswith(sys.argv[1] + "/usr/lib/python3/dist-packages/"), shmrpc.__file__
name = f"deb_test_{os.getpid()}"
try:
    with shmrpc.Queue(name, create=True, type="q()->struct M{u32 n;string s;} @msgpack") as q:
        q.push({"n": 7, "s": "deb"})
        m = q.pop(timeout=5)
        assert m.n == 7 and m.s == "deb", m
finally:
    shmrpc.Queue.unlink(name)
try:
    shmrpc.connect(f"shm://deb_test_nobody_{os.getpid()}", timeout=1)
    raise SystemExit("connected to nobody")
except shmrpc.Unavailable:
    pass
print("python3-shmrpc: imports from", os.path.dirname(shmrpc.__file__))
EOF
    fail "the installed Python module does not import or work"

# speedysvc's name, and its service.ini read and written for the unpacked shmrpc-service
# (found beside the module: $root/usr/bin), without running it.
mkdir "$tmp/speedy"
printf 'from speedysvc import ServerMethodsBase, json_method\nclass EchoServer(ServerMethodsBase):\n    port = 5555\n    name = "echo_serv"\n    @json_method\n    def echo_json(self, data):\n        return data\n' >"$tmp/speedy/echoserver.py"
printf '[defaults]\nlog_dir = logs\n\n[EchoServer]\nimport_from = echoserver\n' >"$tmp/speedy/service.ini"
(cd "$tmp/speedy" && PYTHONPATH=$root${py%/shmrpc} PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1 \
    /usr/bin/python3 -m speedysvc.service --print service.ini) >"$tmp/speedy/out" ||
    fail "python3 -m speedysvc.service --print service.ini from the unpacked module"
grep -q "^exec = .* -m shmrpc.service --serve echoserver:EchoServer " "$tmp/speedy/out" ||
    fail "python3 -m speedysvc.service --print wrote no service for EchoServer"
(cd "$tmp/speedy" && env -u SHMRPC_SERVICE PYTHONPATH=$root${py%/shmrpc} PYTHONNOUSERSITE=1 /usr/bin/python3 -c \
    'import sys, shmrpc.service as s; f = s.find_supervisor(); assert f == sys.argv[1], f' \
    "$root/usr/bin/shmrpc-service") || fail "the module does not find the unpacked shmrpc-service"
echo "python3-shmrpc: speedysvc.service reads a service.ini"

SHMRPC_INSTALLED_PREFIX=$root/usr sh "$src/tests/package/run_consumer.sh" \
    "$(echo "$tmp"/shmrpc/obj-*)" "$src" "${CC:-cc}" "$(dpkg-buildflags --get CFLAGS)"

# The examples libshmrpc-dev installs build as a project of their own against the unpacked
# root, and run.
cmake -S "$root$dev/examples" -B "$tmp/examples" -DCMAKE_PREFIX_PATH="$root/usr" \
    >"$tmp/examples.log" 2>&1 && cmake --build "$tmp/examples" >>"$tmp/examples.log" 2>&1 ||
    { tail -20 "$tmp/examples.log"; fail "the examples of $dev/examples do not build"; }
"$tmp/examples/echo/echo-inproc" | grep -qx "add(40, 2) = 42" || fail "the installed example echo-inproc"
echo "libshmrpc-dev: $dev/examples build and run"

# Installed and purged for real, as piuparts would, but in an overlay of this system (no
# chroot to download): every package installed with dpkg, the module imported as root
# (which writes .pyc files where none were compiled), every package purged; then no file
# may be left that the system did not have, but dpkg's own records and logs. Needs root
# and an overlay mount: skipped (77) without them, which CI (root) does not allow.
sh "$src/tests/package/purge_test.sh" "$tmp" || exit $?
