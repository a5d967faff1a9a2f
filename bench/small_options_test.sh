#!/bin/sh
# SPDX-License-Identifier: MIT
# small_options_test.sh CODEC COMPRESS MAP QUEUE [STREAM...]: each benchmark answers --help
# (usage on stdout) and --version with status 0, and an unknown option, or a bad number of
# seconds for map and queue, with status 2 and its usage on stderr, before running any row.
set -u
fail=0
check() { # expected-status description command...
    want=$1 what=$2
    shift 2
    out=$(timeout 10 "$@" 2>/tmp/bench-small-err.$$) 
    got=$?
    if [ "$got" != "$want" ]; then
        echo "FAIL: $what: status $got, not $want"
        fail=1
    fi
    case "$want:$what" in
    0:*help*) echo "$out" | grep -q '^usage:' || { echo "FAIL: $what: no usage on stdout"; fail=1; } ;;
    0:*version*) echo "$out" | grep -q ' [0-9][0-9.]*$' || { echo "FAIL: $what: '$out'"; fail=1; } ;;
    2:*) grep -q '^usage:' /tmp/bench-small-err.$$ || { echo "FAIL: $what: no usage on stderr"; fail=1; } ;;
    esac
}
for prog in "$@"; do
    name=$(basename "$prog")
    check 0 "$name --help" "$prog" --help
    check 0 "$name --version" "$prog" --version
    check 2 "$name --bogus" "$prog" --bogus
done
check 2 "map: seconds not a number" "$3" abc
check 2 "queue: seconds not a number" "$4" abc
check 2 "queue: seconds 0" "$4" 0
rm -f /tmp/bench-small-err.$$
[ "$fail" = 0 ] && echo "all small benchmarks answer their options"
exit "$fail"
