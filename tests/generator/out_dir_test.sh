#!/bin/sh
# SPDX-License-Identifier: MIT
# out_dir_test.sh SHMRPCGEN SVC: -o makes the folders it names, as a build system expects
# (mkdir -p), and a path through a file fails with a message and writes nothing.
set -u
gen=$1 svc=$2
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
stem=$(basename "$svc" .svc)
fail=0
if ! "$gen" -o "$tmp/a/b/c" "$svc"; then
    echo "FAIL: shmrpcgen -o a/b/c failed"
    fail=1
fi
for f in "$stem.h" "$stem.c" "${stem}_client.c" "${stem}_server.c"; do
    [ -s "$tmp/a/b/c/$f" ] || { echo "FAIL: no $f in a/b/c"; fail=1; }
done
: >"$tmp/file"
"$gen" -o "$tmp/file/d" "$svc" 2>"$tmp/err"
rc=$?
if [ "$rc" -ne 2 ] || ! grep -q "cannot make the folder $tmp/file: Not a directory" "$tmp/err"; then
    echo "FAIL: -o through a file: exit $rc, said: $(cat "$tmp/err")"
    fail=1
fi
[ ! -e "$tmp/file/d" ] || { echo "FAIL: wrote through a file"; fail=1; }
exit "$fail"
