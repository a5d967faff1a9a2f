#!/bin/sh
# SPDX-License-Identifier: MIT
# run_good_files.sh DIR CMD [ARG...]: every DIR/NAME.svc must pass "CMD ARG... NAME.svc"
# (run in DIR) with exit status 0 and no output at all.
set -u
dir=$1
shift
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
count=0
for svc in "$dir"/*.svc; do
    name=$(basename "$svc")
    count=$((count + 1))
    (cd "$dir" && exec "$@" "$name") >"$tmp/out" 2>&1
    status=$?
    if [ "$status" -ne 0 ] || [ -s "$tmp/out" ]; then
        echo "FAIL $name: exit status $status"
        cat "$tmp/out"
        fail=$((fail + 1))
    fi
done
if [ "$count" -eq 0 ]; then
    echo "no .svc files in $dir"
    exit 1
fi
echo "$((count - fail)) of $count valid files passed"
[ "$fail" -eq 0 ]
