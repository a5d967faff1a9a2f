#!/bin/sh
# SPDX-License-Identifier: MIT
# run_error_goldens.sh DIR CMD [ARG...]: for every DIR/NAME.svc, runs "CMD ARG... NAME.svc"
# in DIR and requires exit status 1, nothing on stdout, and stderr equal to DIR/NAME.err.
# With UPDATE=1 in the environment, writes the .err files instead of comparing.
set -u
dir=$1
shift
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
count=0
for svc in "$dir"/*.svc; do
    name=$(basename "$svc" .svc)
    count=$((count + 1))
    (cd "$dir" && exec "$@" "$name.svc") >"$tmp/out" 2>"$tmp/err"
    status=$?
    if [ "${UPDATE:-0}" = 1 ]; then
        cp "$tmp/err" "$dir/$name.err"
    fi
    if [ "$status" -ne 1 ]; then
        echo "FAIL $name.svc: exit status $status, expected 1"
        cat "$tmp/err"
        fail=$((fail + 1))
    elif [ -s "$tmp/out" ]; then
        echo "FAIL $name.svc: wrote to stdout"
        cat "$tmp/out"
        fail=$((fail + 1))
    elif ! cmp -s "$dir/$name.err" "$tmp/err"; then
        echo "FAIL $name.svc: stderr differs from $name.err"
        diff -u "$dir/$name.err" "$tmp/err"
        fail=$((fail + 1))
    fi
done
if [ "$count" -eq 0 ]; then
    echo "no .svc files in $dir"
    exit 1
fi
echo "$((count - fail)) of $count error files passed"
[ "$fail" -eq 0 ]
