#!/bin/sh
# run_goldens.sh SHMRPCGEN GOLDEN_DIR SVC...: generates each SVC into a fresh folder and
# requires the output to equal GOLDEN_DIR/STEM/ byte for byte, and to be the same when
# generated twice. With UPDATE=1 in the environment, rewrites the golden files instead.
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
