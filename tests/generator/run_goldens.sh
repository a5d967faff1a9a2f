#!/bin/sh
# SPDX-License-Identifier: MIT
# run_goldens.sh SHMRPCGEN GOLDEN_DIR SVC...: generates each SVC into a fresh folder and
# requires the output to equal GOLDEN_DIR/STEM/ byte for byte, to be the same when
# generated twice, to fit 100 columns, and to declare no name holding "__" (reserved in
# C++; __cplusplus is the one it reads). With UPDATE=1, rewrites the golden files instead.
set -u
gen=$1 golden=$2
shift 2
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
for svc in "$@"; do
    stem=$(basename "$svc" .svc)
    mkdir -p "$tmp/$stem" "$tmp/again"
    if ! "$gen" -o "$tmp/$stem" "$svc" || ! "$gen" -o "$tmp/again" "$svc"; then
        echo "FAIL $svc: shmrpcgen failed"
        fail=1
        continue
    fi
    if ! diff -r "$tmp/$stem" "$tmp/again" >/dev/null; then
        echo "FAIL $svc: two runs differ"
        fail=1
    fi
    rm -rf "$tmp/again"
    if awk 'length > 100 { print FILENAME ":" FNR ": " length " columns"; bad = 1 }
            END { exit bad }' "$tmp/$stem"/*; then :; else
        echo "FAIL $svc: lines wider than 100 columns"
        fail=1
    fi
    if grep -n '[A-Za-z0-9_]*__[A-Za-z0-9_]*' "$tmp/$stem"/* | grep -v '__cplusplus'; then
        echo "FAIL $svc: a generated name holds \"__\""
        fail=1
    fi
    if [ "${UPDATE:-0}" = 1 ]; then
        rm -rf "$golden/$stem" && cp -r "$tmp/$stem" "$golden/$stem"
    elif ! diff -ru "$golden/$stem" "$tmp/$stem"; then
        echo "FAIL $svc: output differs from $golden/$stem (UPDATE=1 rewrites it)"
        fail=1
    else
        echo "ok $svc"
    fi
done
exit $fail
