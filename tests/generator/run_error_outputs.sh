#!/bin/sh
# SPDX-License-Identifier: MIT
# run_error_outputs.sh SHMRPCGEN ERRORS_DIR: shmrpcgen must print exactly the checker's
# golden messages for every broken file, exit 1, and write no file at all.
set -u
gen=$1 dir=$2
here=$(dirname "$0")
out=$(mktemp -d) || exit 1
trap 'rm -rf "$out"' EXIT
sh "$here/../idl/run_error_goldens.sh" "$dir" "$gen" -o "$out" --depfile "$out/dep.d" || exit 1
if [ -n "$(ls -A "$out")" ]; then
    echo "FAIL: shmrpcgen wrote files for broken input:"
    ls -A "$out"
    exit 1
fi
echo "no output written for any broken file"
