#!/bin/sh
# SPDX-License-Identifier: MIT
# out_dir_test.sh SHMRPCGEN SVC: -o makes the folders it names, as a build system expects
# (mkdir -p), and a path through a file fails with a message and writes nothing; a run
# whose files would not change leaves them as they are (their times too: what ninja's
# restat needs to compile nothing anew), and a file that differs is written again.
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
out=$tmp/a/b/c
touch -d '2001-01-01 00:00:00' "$out/$stem.h" "$out/$stem.c" "$out/${stem}_client.c"
echo "/* changed */" >>"$out/${stem}_server.c"
touch -d '2001-01-01 00:00:00' "$out/${stem}_server.c"
"$gen" -o "$out" "$svc" || { echo "FAIL: shmrpcgen again failed"; fail=1; }
for f in "$stem.h" "$stem.c" "${stem}_client.c"; do
    [ "$(stat -c %Y "$out/$f")" = "$(date -d '2001-01-01 00:00:00' +%s)" ] ||
        { echo "FAIL: $f, which did not change, was written again"; fail=1; }
done
[ "$(stat -c %Y "$out/${stem}_server.c")" != "$(date -d '2001-01-01 00:00:00' +%s)" ] &&
    ! grep -q "changed" "$out/${stem}_server.c" ||
    { echo "FAIL: ${stem}_server.c, which differed, was not written again"; fail=1; }
[ -z "$(ls "$out" | grep tmp)" ] || { echo "FAIL: left behind: $(ls "$out")"; fail=1; }
exit "$fail"
