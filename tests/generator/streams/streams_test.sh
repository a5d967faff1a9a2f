#!/bin/sh
# SPDX-License-Identifier: MIT
# streams_test.sh SHMRPCGEN SVC_CHECK DIR: DIR/ticker.svc, a service of streams each way,
# checks out; shmrpcgen writes each way's functions and no call stub for them (the code
# itself is compiled and run by the goldens and tests/stream); --check-compat tells a
# stream from a method that answers once, both ways.
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
if [ "$rc" -ne 0 ] || [ -s "$tmp/stdout" ] || [ -s "$tmp/err" ]; then
    echo "FAIL: shmrpcgen ticker.svc: exit $rc, said: $(cat "$tmp/stdout" "$tmp/err")"
    fail=1
fi
# Each way's functions, and no call stub for a stream.
cat >"$tmp/want" <<'END'
int ticker_ticks_open(shmrpc_client *client_, int64_t n, shmrpc_stream **stream_);
int ticker_ticks_recv(shmrpc_stream *stream_, ticker_Tick *item_);
int ticker_sum_open(shmrpc_client *client_, shmrpc_stream **stream_);
int ticker_sum_send(shmrpc_stream *stream_, int64_t item_);
int ticker_sum_done(shmrpc_stream *stream_, int64_t *out_);
int ticker_doubled_open(shmrpc_client *client_, shmrpc_stream **stream_);
int ticker_doubled_send(shmrpc_stream *stream_, int64_t item_);
int ticker_doubled_done(shmrpc_stream *stream_);
int ticker_doubled_recv(shmrpc_stream *stream_, int64_t *item_);
int ticker_chunks_open(shmrpc_client *client_, shmrpc_bytes whole, shmrpc_stream **stream_);
int ticker_chunks_recv(shmrpc_stream *stream_, shmrpc_bytes *item_);
int ticker_joined_open(shmrpc_client *client_, shmrpc_stream **stream_);
int ticker_joined_send(shmrpc_stream *stream_, shmrpc_bytes item_);
int ticker_joined_done(shmrpc_stream *stream_, shmrpc_bytes *out_);
    int (*ticks)(shmrpc_ctx *ctx_, int64_t n);
    int (*sum)(shmrpc_ctx *ctx_, int64_t *out_);
    int (*doubled)(shmrpc_ctx *ctx_);
    int (*chunks)(shmrpc_ctx *ctx_, shmrpc_bytes whole);
    int (*joined)(shmrpc_ctx *ctx_, shmrpc_bytes *out_);
int ticker_ticks_write(shmrpc_ctx *ctx_, const ticker_Tick *item_);
int ticker_sum_read(shmrpc_ctx *ctx_, int64_t *item_);
int ticker_doubled_read(shmrpc_ctx *ctx_, int64_t *item_);
int ticker_doubled_write(shmrpc_ctx *ctx_, int64_t item_);
int ticker_chunks_write(shmrpc_ctx *ctx_, shmrpc_bytes item_);
int ticker_joined_read(shmrpc_ctx *ctx_, shmrpc_bytes *item_);
END
grep -E '^int ticker_|^    int \(\*' "$tmp/out/ticker.h" >"$tmp/got" 2>/dev/null
if ! cmp -s "$tmp/want" "$tmp/got"; then
    echo "FAIL: ticker.h declares otherwise:"
    diff -u "$tmp/want" "$tmp/got"
    fail=1
fi
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
[ "$fail" -eq 0 ] && echo "streams checked, generated each way, compared"
exit "$fail"
