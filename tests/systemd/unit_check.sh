#!/bin/sh
# SPDX-License-Identifier: MIT
# unit_check.sh UNIT.in BINDIR: shmrpc-service@.service passes systemd-analyze verify
# without a word, and systemd-analyze security --offline=yes rates its exposure "OK" or
# better (at most 3.9 of 10; docs/systemd.md gives the score). Skipped (77) without
# systemd-analyze, or with one too old for --offline (before systemd 250).
set -eu
unit_in=$1
bindir=$2
command -v systemd-analyze >/dev/null || { echo "SKIP: no systemd-analyze"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
unit=$tmp/shmrpc-service@.service
sed "s|@SHMRPC_UNIT_BINDIR@|$bindir|" "$unit_in" >"$unit"

# A template is verified as an instance of it.
out=$(cd "$tmp" && systemd-analyze verify --man=no "$unit" 2>&1) || {
    echo "FAIL: systemd-analyze verify:"
    echo "$out"
    exit 1
}
if [ -n "$out" ]; then
    echo "FAIL: systemd-analyze verify warns:"
    echo "$out"
    exit 1
fi
echo "ok: systemd-analyze verify"

sec=$(cd "$tmp" && systemd-analyze security --offline=yes --no-pager "$unit" 2>&1) || true
line=$(printf '%s\n' "$sec" | grep 'Overall exposure level' || true)
if [ -z "$line" ]; then
    if printf '%s\n' "$sec" | grep -qi 'unrecognized option\|unknown option'; then
        echo "SKIP: this systemd-analyze has no --offline"
        exit 77
    fi
    echo "FAIL: systemd-analyze security:"
    printf '%s\n' "$sec" | tail -20
    exit 1
fi
echo "$line"
score=$(printf '%s\n' "$line" | sed -E 's/.*: ([0-9]+\.[0-9]+) .*/\1/')
if ! awk -v s="$score" 'BEGIN { exit !(s + 0 <= 3.9) }'; then
    echo "FAIL: exposure $score is above 3.9 (\"OK\"):"
    printf '%s\n' "$sec" | grep '✗' || true
    exit 1
fi
