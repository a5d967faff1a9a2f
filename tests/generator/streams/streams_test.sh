#!/bin/sh
# SPDX-License-Identifier: MIT
# streams_test.sh SHMRPCGEN SVC_CHECK DIR: DIR/ticker.svc, a service of streams, checks out;
# shmrpcgen says for each method that streams its parameter that it does not generate it
# yet, and writes nothing; --check-compat tells a stream from a method that answers once,
# both ways.
set -u
gen=$1 check=$2 dir=$3
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
if ! out=$(cd "$dir" && "$check" ticker.svc 2>&1) || [ -n "$out" ]; then
    echo "FAIL: svc-check ticker.svc: $out"
    fail=1
fi
(cd "$dir" && exec "$gen" -o "$tmp/out" ticker.svc) >"$tmp/stdout" 2>"$tmp/err"
rc=$?
cat >"$tmp/want" <<'END'
ticker.svc:12:9: error: method 'sum' streams its parameter: shmrpcgen does not generate client streams yet
ticker.svc:14:17: error: method 'doubled' streams its parameter: shmrpcgen does not generate client streams yet
ticker.svc:16:16: error: method 'joined' streams its parameter: shmrpcgen does not generate client streams yet
END
if [ "$rc" -ne 1 ] || [ -s "$tmp/stdout" ] || ! cmp -s "$tmp/want" "$tmp/err"; then
    echo "FAIL: shmrpcgen ticker.svc: exit $rc, said:"
    diff -u "$tmp/want" "$tmp/err"
    fail=1
fi
[ ! -e "$tmp/out" ] || { echo "FAIL: shmrpcgen wrote $(ls "$tmp/out")"; fail=1; }
sed 's/stream<Tick> ticks/Tick ticks/' "$dir/ticker.svc" >"$tmp/plain.svc"
"$gen" --check-compat "$dir/ticker.svc" "$tmp/plain.svc" >"$tmp/verdict" 2>&1
rc=$?
if [ "$rc" -ne 1 ] ||
    ! grep -q "'ticks' has another signature, incompatible: the result is a stream on the client only" "$tmp/verdict" ||
    ! grep -q "the result is a stream on the server only" "$tmp/verdict"; then
    echo "FAIL: --check-compat, a stream against one answer: exit $rc, said:"
    cat "$tmp/verdict"
    fail=1
fi
"$gen" --check-compat "$dir/ticker.svc" "$dir/ticker.svc" >"$tmp/verdict" 2>&1 || {
    echo "FAIL: --check-compat of ticker.svc with itself: $(cat "$tmp/verdict")"
    fail=1
}
[ "$fail" -eq 0 ] && echo "streams checked, client streams refused by shmrpcgen, compared"
exit "$fail"
