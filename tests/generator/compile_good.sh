#!/bin/sh
# SPDX-License-Identifier: MIT
# compile_good.sh SHMRPCGEN RUNTIME_INCLUDE SVC...: the code generated for every valid
# file compiles warning-free with gcc and clang at -Wall -Wextra -Werror -pedantic, in
# ISO C11 and in GNU C11 (the compilers' default, which predefines unix and linux), and
# declares no name holding "__" (reserved in C++; __cplusplus is the one it reads).
set -u
gen=$1 inc=$2
shift 2
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
compilers=""
for cc in gcc clang; do
    command -v "$cc" >/dev/null 2>&1 && compilers="$compilers $cc"
done
[ -n "$compilers" ] || { echo "no C compiler"; exit 1; }
fail=0 count=0
for svc in "$@"; do
    stem=$(basename "$svc" .svc)
    dir="$tmp/$stem"
    mkdir -p "$dir"
    if ! "$gen" -o "$dir" "$svc"; then
        echo "FAIL $svc: shmrpcgen failed"
        fail=1
        continue
    fi
    if grep -n '[A-Za-z0-9_]*__[A-Za-z0-9_]*' "$dir"/* | grep -v '__cplusplus'; then
        echo "FAIL $svc: a generated name holds \"__\""
        fail=1
    fi
    for cc in $compilers; do
        for std in c11 gnu11; do
            for src in "$dir"/*.c; do
                count=$((count + 1))
                if ! "$cc" -std=$std -Wall -Wextra -Werror -pedantic -I"$inc" -I"$dir" \
                    -c "$src" -o "$src.$cc.o"; then
                    echo "FAIL $cc -std=$std $svc: $(basename "$src")"
                    fail=1
                fi
            done
        done
    done
done
echo "$count compilations ($compilers; c11 and gnu11) of code generated from $# files"
exit $fail
