/* SPDX-License-Identifier: MIT */
/* The TCP wire codec (runtime/src/transport/tcp/frame.c, docs/wire.md): a table of malformed
 * headers each with its status and message, round trips of every frame kind, compressed bodies that
 * lie, and the handshake with its mismatch messages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <snappy-c.h>
#include <zlib.h>

#include "transport/tcp/frame.h"
#include "unit.h"

#define MAX_BODY 1000u

/* A header from its fields, written byte by byte so that the test does not trust the
 * encoder it tests. */
static void put_be(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = n; i-- > 0; v >>= 8)
        p[i] = (uint8_t)v;
}

static void raw_hdr(uint8_t out[24], uint32_t magic, uint8_t version, uint8_t kind, uint16_t flags,
                    uint32_t method, uint64_t rid, uint32_t len)
{
    put_be(out, magic, 4);
    out[4] = version;
    out[5] = kind;
    put_be(out + 6, flags, 2);
    put_be(out + 8, method, 4);
    put_be(out + 12, rid, 8);
    put_be(out + 20, len, 4);
}

/* --- the table of malformed headers --- */

#define M SHMRPC__FRAME_MAGIC
#define V SHMRPC__FRAME_VERSION
enum { HELLO = 1, ACK, REQ, RESP, ERR, PING, PONG, AUTH, DRAIN, CANCEL, ITEMS, WINDOW };
#define AGREED_CANCEL SHMRPC__AGREED_CANCEL
#define STREAMS SHMRPC__AGREED_STREAMS
#define STREAM_FLAG SHMRPC__FLAG_STREAM
#define CLIENT_STREAMS (SHMRPC__AGREED_STREAMS | SHMRPC__AGREED_CLIENT_STREAMS)
#define LAST_FLAG SHMRPC__FLAG_LAST

typedef struct hdr_case {
    const char *name;
    size_t n; /* bytes handed to the decoder; 24 unless truncated */
    uint32_t magic;
    uint8_t version, kind;
    uint16_t flags;
    uint32_t method;
    uint64_t rid;
    uint32_t len;
    uint16_t agreed; /* compression agreed, the lone flag (revision 3), the deadline flag (4),
                        CANCEL frames (5), the metadata flag (7), streams (8) */
    int rc;
    const char *msg;
} hdr_case;

static const hdr_case hdr_cases[] = {
    {"empty", 0, M, V, REQ, 0, 1, 1, 10, 0, SHMRPC_EPROTO, "truncated frame header: 0 of 24 bytes"},
    {"truncated", 23, M, V, REQ, 0, 1, 1, 10, 0, SHMRPC_EPROTO,
     "truncated frame header: 23 of 24 bytes"},
    {"bad magic", 24, 0x48545450, V, REQ, 0, 1, 1, 10, 0, SHMRPC_EPROTO,
     "bad frame magic 0x48545450 (expected 0x53525057): not a shmrpc peer"},
    {"wrong version", 24, M, 2, REQ, 0, 1, 1, 10, 0, SHMRPC_EVERSION,
     "frame version 2; this side speaks version 1"},
    {"version 0", 24, M, 0, REQ, 0, 1, 1, 10, 0, SHMRPC_EVERSION,
     "frame version 0; this side speaks version 1"},
    {"kind 0", 24, M, V, 0, 0, 1, 1, 10, 0, SHMRPC_EPROTO, "unknown frame kind 0"},
    {"kind 13", 24, M, V, 13, 0, 0, 0, 10, STREAMS, SHMRPC_EPROTO, "unknown frame kind 13"},
    {"kind 255", 24, M, V, 255, 0, 1, 1, 10, 0, SHMRPC_EPROTO, "unknown frame kind 255"},
    {"unknown flag", 24, M, V, REQ, 0x0040, 1, 1, 10, 15, SHMRPC_EPROTO,
     "unknown flag bits 0x0040 in a REQUEST frame"},
    {"metadata not agreed", 24, M, V, REQ, 0x0010, 1, 1, 10, 15, SHMRPC_EPROTO,
     "REQUEST frame has the metadata flag, which needs protocol revision 7 (not agreed)"},
    {"metadata cut short", 24, M, V, REQ, 0x0010, 1, 1, 2, 0x1f, SHMRPC_EPROTO,
     "REQUEST frame has the metadata flag and a body of 2 bytes, too short to hold any"},
    {"metadata after a deadline cut short", 24, M, V, REQ, 0x0018, 1, 1, 10, 0x1f, SHMRPC_EPROTO,
     "REQUEST frame has the metadata flag and a body of 10 bytes, too short to hold any"},
    {"metadata on a response", 24, M, V, RESP, 0x0010, 1, 1, 10, 0x1f, SHMRPC_EPROTO,
     "unknown flag bits 0x0010 in a RESPONSE frame"},
    {"deadline not agreed", 24, M, V, REQ, 0x0008, 1, 1, 10, 7, SHMRPC_EPROTO,
     "REQUEST frame has the deadline flag, which needs protocol revision 4 (not agreed)"},
    {"deadline cut short", 24, M, V, REQ, 0x0008, 1, 1, 7, 15, SHMRPC_EPROTO,
     "REQUEST frame has the deadline flag and a body of 7 bytes (its deadline takes 8)"},
    {"deadline and no compressed body", 24, M, V, REQ, 0x0009, 1, 1, 8, 15, SHMRPC_EPROTO,
     "REQUEST frame has the deadline flag and a body of 8 bytes (its deadline takes 8, and a "
     "compressed request at least 1 more)"},
    {"deadline on a response", 24, M, V, RESP, 0x0008, 1, 1, 10, 15, SHMRPC_EPROTO,
     "unknown flag bits 0x0008 in a RESPONSE frame"},
    {"lone not agreed", 24, M, V, REQ, 0x0004, 1, 1, 10, 3, SHMRPC_EPROTO,
     "REQUEST frame has the lone flag, which needs protocol revision 3 (not agreed)"},
    {"lone on a response", 24, M, V, RESP, 0x0004, 1, 1, 10, 7, SHMRPC_EPROTO,
     "unknown flag bits 0x0004 in a RESPONSE frame"},
    {"high flag", 24, M, V, RESP, 0x8001, 1, 1, 10, 3, SHMRPC_EPROTO,
     "unknown flag bits 0x8000 in a RESPONSE frame"},
    {"both compressions", 24, M, V, REQ, 3, 1, 1, 10, 3, SHMRPC_EPROTO,
     "REQUEST frame has both the snappy and the zlib flag"},
    {"snappy not agreed", 24, M, V, REQ, 1, 1, 1, 10, 2, SHMRPC_EPROTO,
     "REQUEST frame is compressed with snappy, which was not agreed"},
    {"zlib before handshake", 24, M, V, RESP, 2, 1, 1, 10, 0, SHMRPC_EPROTO,
     "RESPONSE frame is compressed with zlib, which was not agreed"},
    {"compressed empty", 24, M, V, REQ, 1, 1, 1, 0, 1, SHMRPC_EPROTO,
     "REQUEST frame is compressed but has an empty body"},
    {"hello empty body", 24, M, V, HELLO, 0, 0, 0, 0, 0, SHMRPC_EPROTO,
     "HELLO frame has an empty body"},
    {"ack empty body", 24, M, V, ACK, 0, 0, 0, 0, 0, SHMRPC_EPROTO,
     "HELLO_ACK frame has an empty body"},
    {"error empty body", 24, M, V, ERR, 0, 0, 7, 0, 0, SHMRPC_EPROTO,
     "ERROR frame has an empty body"},
    {"hello compressed", 24, M, V, HELLO, 1, 0, 0, 10, 1, SHMRPC_EPROTO,
     "HELLO frame has a compression flag"},
    {"hello with method", 24, M, V, HELLO, 0, 3, 0, 10, 0, SHMRPC_EPROTO,
     "HELLO frame has a method or request id"},
    {"ack with request id", 24, M, V, ACK, 0, 0, 9, 10, 0, SHMRPC_EPROTO,
     "HELLO_ACK frame has a method or request id"},
    {"error compressed", 24, M, V, ERR, 2, 0, 0, 10, 2, SHMRPC_EPROTO,
     "ERROR frame has a compression flag"},
    {"ping with body", 24, M, V, PING, 0, 0, 5, 1, 0, SHMRPC_EPROTO,
     "PING frame has a body of 1 bytes (it has none)"},
    {"pong with method", 24, M, V, PONG, 0, 2, 5, 0, 0, SHMRPC_EPROTO,
     "PONG frame has method id 2"},
    {"auth short", 24, M, V, AUTH, 0, 0, 0, 31, 0, SHMRPC_EPROTO,
     "AUTH frame has a body of 31 bytes (it has 32)"},
    {"auth with request id", 24, M, V, AUTH, 0, 0, 4, 32, 0, SHMRPC_EPROTO,
     "AUTH frame has a method or request id"},
    {"auth compressed", 24, M, V, AUTH, 1, 0, 0, 32, 1, SHMRPC_EPROTO,
     "AUTH frame has a compression flag"},
    {"drain with body", 24, M, V, DRAIN, 0, 0, 0, 1, 0, SHMRPC_EPROTO,
     "DRAIN frame has a body of 1 bytes (it has none)"},
    {"drain with request id", 24, M, V, DRAIN, 0, 0, 7, 0, 0, SHMRPC_EPROTO,
     "DRAIN frame has a method or request id"},
    {"drain compressed", 24, M, V, DRAIN, 1, 0, 0, 0, 1, SHMRPC_EPROTO,
     "DRAIN frame has a compression flag"},
    {"drain with method", 24, M, V, DRAIN, 0, 5, 0, 0, 0, SHMRPC_EPROTO,
     "DRAIN frame has a method or request id"},
    {"cancel not agreed", 24, M, V, CANCEL, 0, 0, 7, 0, SHMRPC__FLAG_DEADLINE, SHMRPC_EPROTO,
     "CANCEL frame needs protocol revision 5 (not agreed)"},
    {"cancel with no request id", 24, M, V, CANCEL, 0, 0, 0, 0, AGREED_CANCEL, SHMRPC_EPROTO,
     "CANCEL frame has a method id or no request id"},
    {"cancel with method", 24, M, V, CANCEL, 0, 3, 7, 0, AGREED_CANCEL, SHMRPC_EPROTO,
     "CANCEL frame has a method id or no request id"},
    {"cancel with body", 24, M, V, CANCEL, 0, 0, 7, 1, AGREED_CANCEL, SHMRPC_EPROTO,
     "CANCEL frame has a body of 1 bytes (it has none)"},
    {"cancel compressed", 24, M, V, CANCEL, 1, 0, 7, 0, AGREED_CANCEL | 1, SHMRPC_EPROTO,
     "CANCEL frame has a compression flag"},
    {"cancel with the lone flag", 24, M, V, CANCEL, SHMRPC__FLAG_LONE, 0, 7, 0,
     AGREED_CANCEL | SHMRPC__FLAG_LONE, SHMRPC_EPROTO,
     "unknown flag bits 0x0004 in a CANCEL frame"},
    {"items not agreed", 24, M, V, ITEMS, 0, 3, 7, 8, AGREED_CANCEL | 3, SHMRPC_EPROTO,
     "ITEMS frame needs protocol revision 8 (not agreed)"},
    {"items with no request id", 24, M, V, ITEMS, 0, 3, 0, 8, STREAMS, SHMRPC_EPROTO,
     "ITEMS frame has no request id"},
    {"items too short for a length", 24, M, V, ITEMS, 0, 3, 7, 3, STREAMS, SHMRPC_EPROTO,
     "ITEMS frame has a body of 3 bytes, too short for an item's length"},
    {"items with no body", 24, M, V, ITEMS, 0, 3, 7, 0, STREAMS, SHMRPC_EPROTO,
     "ITEMS frame has a body of 0 bytes, too short for an item's length"},
    {"items with both compressions", 24, M, V, ITEMS, 3, 3, 7, 8, STREAMS | 3, SHMRPC_EPROTO,
     "ITEMS frame has both the snappy and the zlib flag"},
    {"items compressed, not agreed", 24, M, V, ITEMS, 2, 3, 7, 8, STREAMS | 1, SHMRPC_EPROTO,
     "ITEMS frame is compressed with zlib, which was not agreed"},
    {"items compressed, empty", 24, M, V, ITEMS, 1, 3, 7, 0, STREAMS | 1, SHMRPC_EPROTO,
     "ITEMS frame is compressed but has an empty body"},
    {"items with the stream flag", 24, M, V, ITEMS, STREAM_FLAG, 3, 7, 8, STREAMS, SHMRPC_EPROTO,
     "unknown flag bits 0x0020 in a ITEMS frame"},
    {"items with the last flag, not agreed", 24, M, V, ITEMS, LAST_FLAG, 3, 7, 8, STREAMS,
     SHMRPC_EPROTO, "ITEMS frame has the last flag, which needs protocol revision 9 (not agreed)"},
    {"items with no body and no last flag", 24, M, V, ITEMS, 0, 3, 7, 0, CLIENT_STREAMS,
     SHMRPC_EPROTO, "ITEMS frame has a body of 0 bytes, too short for an item's length"},
    {"the last flag on a request", 24, M, V, REQ, LAST_FLAG, 3, 7, 8, CLIENT_STREAMS, SHMRPC_EPROTO,
     "unknown flag bits 0x0040 in a REQUEST frame"},
    {"items above the maximum and a length", 24, M, V, ITEMS, 0, 3, 7, MAX_BODY + 5, STREAMS,
     SHMRPC_ETOOBIG, "ITEMS frame body of 1005 bytes is above the maximum of 1004"},
    {"window not agreed", 24, M, V, WINDOW, 0, 0, 7, 4, AGREED_CANCEL, SHMRPC_EPROTO,
     "WINDOW frame needs protocol revision 8 (not agreed)"},
    {"window compressed", 24, M, V, WINDOW, 1, 0, 7, 4, STREAMS | 1, SHMRPC_EPROTO,
     "WINDOW frame has a compression flag"},
    {"window with a method", 24, M, V, WINDOW, 0, 3, 7, 4, STREAMS, SHMRPC_EPROTO,
     "WINDOW frame has a method id or no request id"},
    {"window with no request id", 24, M, V, WINDOW, 0, 0, 0, 4, STREAMS, SHMRPC_EPROTO,
     "WINDOW frame has a method id or no request id"},
    {"window of 3 bytes", 24, M, V, WINDOW, 0, 0, 7, 3, STREAMS, SHMRPC_EPROTO,
     "WINDOW frame has a body of 3 bytes (it has 4)"},
    {"window of 5 bytes", 24, M, V, WINDOW, 0, 0, 7, 5, STREAMS, SHMRPC_EPROTO,
     "WINDOW frame has a body of 5 bytes (it has 4)"},
    {"stream flag not agreed", 24, M, V, REQ, STREAM_FLAG, 3, 7, 8, AGREED_CANCEL | 0x1c,
     SHMRPC_EPROTO,
     "REQUEST frame has the stream flag, which needs protocol revision 8 (not agreed)"},
    {"stream flag with the lone flag", 24, M, V, REQ, STREAM_FLAG | SHMRPC__FLAG_LONE, 3, 7, 8,
     STREAMS | SHMRPC__FLAG_LONE, SHMRPC_EPROTO,
     "REQUEST frame has both the lone and the stream flag"},
    {"stream flag on a response", 24, M, V, RESP, STREAM_FLAG, 3, 7, 8, STREAMS, SHMRPC_EPROTO,
     "unknown flag bits 0x0020 in a RESPONSE frame"},
    {"auth with method", 24, M, V, AUTH, 0, 6, 0, 32, 0, SHMRPC_EPROTO,
     "AUTH frame has a method or request id"},
    {"ping compressed", 24, M, V, PING, 1, 0, 5, 0, 1, SHMRPC_EPROTO,
     "PING frame has a compression flag"},
    {"length 2^32-1", 24, M, V, REQ, 0, 1, 1, UINT32_MAX, 0, SHMRPC_ETOOBIG,
     "REQUEST frame body of 4294967295 bytes is above the maximum of 1000"},
    {"just above the maximum", 24, M, V, RESP, 0, 1, 1, MAX_BODY + 1, 0, SHMRPC_ETOOBIG,
     "RESPONSE frame body of 1001 bytes is above the maximum of 1000"},
    {"hello above the maximum", 24, M, V, HELLO, 0, 0, 0, UINT32_MAX, 0, SHMRPC_ETOOBIG,
     "HELLO frame body of 4294967295 bytes is above the maximum of 1000"},
    /* accepted */
    {"at the maximum", 24, M, V, REQ, 0, 1, 1, MAX_BODY, 0, 0, ""},
    {"empty request", 24, M, V, REQ, 0, 1, 1, 0, 0, 0, ""},
    {"cancel", 24, M, V, CANCEL, 0, 0, UINT64_MAX, 0, AGREED_CANCEL, 0, ""},
    {"snappy agreed", 24, M, V, RESP, 1, 1, 1, 10, 1, 0, ""},
    {"zlib agreed", 24, M, V, REQ, 2, 1, 1, 10, 2, 0, ""},
    {"lone agreed", 24, M, V, REQ, 0x0004, 1, 1, 10, 4, 0, ""},
    {"lone and zlib agreed", 24, M, V, REQ, 0x0006, 1, 1, 10, 6, 0, ""},
    {"auth", 24, M, V, AUTH, 0, 0, 0, 32, 0, 0, ""},
    {"connection error", 24, M, V, ERR, 0, 0, 0, 10, 0, 0, ""},
    {"ping", 24, M, V, PING, 0, 0, 77, 0, 0, 0, ""},
    {"items", 24, M, V, ITEMS, 0, 3, 7, 4, STREAMS, 0, ""},
    {"items of the largest item", 24, M, V, ITEMS, 0, 3, 7, MAX_BODY + 4, STREAMS, 0, ""},
    {"items compressed", 24, M, V, ITEMS, 1, 3, 7, 1, STREAMS | 1, 0, ""},
    {"the last items", 24, M, V, ITEMS, LAST_FLAG, 3, 7, 4, CLIENT_STREAMS, 0, ""},
    {"the last, with no items", 24, M, V, ITEMS, LAST_FLAG, 3, 7, 0, CLIENT_STREAMS, 0, ""},
    {"window", 24, M, V, WINDOW, 0, 0, 7, 4, STREAMS, 0, ""},
    {"stream open", 24, M, V, REQ, STREAM_FLAG | SHMRPC__FLAG_DEADLINE, 3, 7, 8,
     STREAMS | SHMRPC__FLAG_DEADLINE, 0, ""},
};

static void malformed_headers(void **state)
{
    (void)state;
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    for (size_t i = 0; i < sizeof hdr_cases / sizeof hdr_cases[0]; i++) {
        const hdr_case *c = &hdr_cases[i];
        uint8_t b[24];
        raw_hdr(b, c->magic, c->version, c->kind, c->flags, c->method, c->rid, c->len);
        shmrpc__frame_hdr h = {.kind = 0xee};
        shmrpc__msg_clear(&err);
        int rc = shmrpc__frame_hdr_decode(b, c->n, MAX_BODY, c->agreed, &h, &err);
        if (rc != c->rc || strcmp(shmrpc__msg_get(&err), c->msg) != 0)
            fail_msg("%s: got %d '%s', expected %d '%s'", c->name, rc, shmrpc__msg_get(&err), c->rc,
                     c->msg);
        if (rc) {
            assert_int_equal(h.kind, 0xee); /* untouched on failure */
        } else {
            assert_int_equal(h.kind, c->kind);
            assert_int_equal(h.flags, c->flags);
            assert_int_equal(h.method, c->method);
            assert_int_equal(h.request_id, c->rid);
            assert_int_equal(h.body_len, c->len);
        }
    }
    /* A deadline on top of the largest maximum a receiver can have does not wrap it. */
    uint8_t b[24];
    raw_hdr(b, SHMRPC__FRAME_MAGIC, SHMRPC__FRAME_VERSION, SHMRPC__KIND_REQUEST,
            SHMRPC__FLAG_DEADLINE, 1, 1, 100);
    shmrpc__frame_hdr h;
    assert_int_equal(shmrpc__frame_hdr_decode(b, 24, UINT32_MAX, SHMRPC__FLAG_DEADLINE, &h, &err),
                     0);
    raw_hdr(b, SHMRPC__FRAME_MAGIC, SHMRPC__FRAME_VERSION, SHMRPC__KIND_REQUEST,
            SHMRPC__FLAG_DEADLINE, 1, 1, MAX_BODY + SHMRPC__DEADLINE_LEN);
    assert_int_equal(shmrpc__frame_hdr_decode(b, 24, MAX_BODY, SHMRPC__FLAG_DEADLINE, &h, &err), 0);
    raw_hdr(b, SHMRPC__FRAME_MAGIC, SHMRPC__FRAME_VERSION, SHMRPC__KIND_REQUEST,
            SHMRPC__FLAG_DEADLINE, 1, 1, MAX_BODY + SHMRPC__DEADLINE_LEN + 1);
    assert_int_equal(shmrpc__frame_hdr_decode(b, 24, MAX_BODY, SHMRPC__FLAG_DEADLINE, &h, &err),
                     SHMRPC_ETOOBIG);
    /* Metadata comes on top of the maximum too, at most its length and 4096 bytes. */
    raw_hdr(b, SHMRPC__FRAME_MAGIC, SHMRPC__FRAME_VERSION, SHMRPC__KIND_REQUEST, SHMRPC__FLAG_META,
            1, 1, MAX_BODY + 2 + 4096);
    assert_int_equal(shmrpc__frame_hdr_decode(b, 24, MAX_BODY, SHMRPC__FLAG_META, &h, &err), 0);
    raw_hdr(b, SHMRPC__FRAME_MAGIC, SHMRPC__FRAME_VERSION, SHMRPC__KIND_REQUEST, SHMRPC__FLAG_META,
            1, 1, MAX_BODY + 2 + 4096 + 1);
    assert_int_equal(shmrpc__frame_hdr_decode(b, 24, MAX_BODY, SHMRPC__FLAG_META, &h, &err),
                     SHMRPC_ETOOBIG);
    shmrpc_buf_destroy(&err);
}

/* Every frame kind through begin/end and back through the decoder, with the layout of
 * docs/wire.md byte for byte. */
static void every_kind_round_trips(void **state)
{
    (void)state;
    shmrpc_buf out, err;
    shmrpc_buf_init(&out);
    shmrpc_buf_init(&err);
    static const struct {
        uint8_t kind;
        uint16_t flags;
        uint32_t method;
        uint64_t rid;
        const char *body;
    } frames[] = {
        {HELLO, 0, 0, 0, "h"},
        {ACK, 0, 0, 0, "ack"},
        {REQ, 0, 0xfffffffe, 0x0102030405060708ull, "request"},
        {REQ, 1, 4, UINT64_MAX, "snappy"},
        {RESP, 2, 4, 1, "zlib body"},
        {RESP, 0, 4, 1, ""},
        {ERR, 0, 4, 1, "e"},
        {PING, 0, 0, 42, ""},
        {PONG, 0, 0, 42, ""},
        {CANCEL, 0, 0, 43, ""},
        {ITEMS, 0, 4, 44, "lenNitem"},
        {ITEMS, 1, 4, 44, "snappy items"},
        {WINDOW, 0, 0, 44, "gran"},
        {REQ, STREAM_FLAG, 4, 45, "open"},
    };
    for (size_t i = 0; i < sizeof frames / sizeof frames[0]; i++) {
        shmrpc_buf_clear(&out);
        shmrpc_buf_append(&out, "xy", 2); /* a frame need not start the buffer */
        size_t at = shmrpc__frame_begin(&out, frames[i].kind, frames[i].flags, frames[i].method,
                                        frames[i].rid);
        assert_int_equal(at, 2);
        size_t n = strlen(frames[i].body);
        shmrpc_buf_append(&out, frames[i].body, n);
        assert_int_equal(shmrpc__frame_end(&out, at), 0);
        assert_int_equal(out.len, 2 + 24 + n);

        uint8_t want[24];
        raw_hdr(want, M, V, frames[i].kind, frames[i].flags, frames[i].method, frames[i].rid,
                (uint32_t)n);
        assert_memory_equal(out.data + 2, want, 24);

        shmrpc__frame_hdr h;
        assert_int_equal(shmrpc__frame_hdr_decode(out.data + 2, 24, MAX_BODY,
                                                  SHMRPC__FLAG_COMPRESSION | AGREED_CANCEL |
                                                      STREAMS,
                                                  &h,
                                                  &err),
                         0);
        assert_int_equal(h.kind, frames[i].kind);
        assert_int_equal(h.flags, frames[i].flags);
        assert_int_equal(h.method, frames[i].method);
        assert_true(h.request_id == frames[i].rid);
        assert_int_equal(h.body_len, n);
        assert_memory_equal(out.data + 26, frames[i].body, n);
    }
    /* A frame ended where none began, or in a buffer that could not hold it, says so. */
    assert_int_equal(shmrpc__frame_end(&out, out.len + 1), SHMRPC_EINVAL);
    assert_int_equal(shmrpc__frame_end(&out, out.len - 23), SHMRPC_EINVAL);
    shmrpc_buf small;
    shmrpc_buf_init(&small);
    small.max = 16;
    size_t at = shmrpc__frame_begin(&small, REQ, 0, 1, 1);
    assert_int_not_equal(small.err, 0);
    assert_int_equal(shmrpc__frame_end(&small, at), small.err);
    uint16_t used = 7;
    assert_int_equal(
        shmrpc__body_compress(SHMRPC__FLAG_SNAPPY, shmrpc_bytes_of("abc", 3), &small, &used),
        small.err);
    assert_int_equal(used, 0);
    shmrpc_buf_destroy(&small);
    assert_string_equal(shmrpc__frame_kind_name(SHMRPC__KIND_HELLO_ACK), "HELLO_ACK");
    assert_string_equal(shmrpc__frame_kind_name(SHMRPC__KIND_WINDOW), "WINDOW");
    assert_string_equal(shmrpc__frame_kind_name(0), "unknown");
    assert_string_equal(shmrpc__frame_kind_name(99), "unknown");
    shmrpc_buf_destroy(&out);
    shmrpc_buf_destroy(&err);
}

/* --- compressed bodies --- */

static uint8_t *text_of(size_t n)
{
    static const char words[] = "the quick brown fox jumps over the lazy dog; shmrpc frames ";
    uint8_t *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)words[(i * 7 + i / 61) % (sizeof words - 1)];
    return p;
}

static uint8_t *noise_of(size_t n)
{
    uint8_t *p = malloc(n);
    assert_non_null(p);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)(x >> 24);
    }
    return p;
}

static void compression_round_trips(void **state)
{
    (void)state;
    const size_t n = 64 << 10;
    uint8_t *text = text_of(n), *noise = noise_of(n);
    static const uint16_t algs[] = {SHMRPC__FLAG_SNAPPY, SHMRPC__FLAG_ZLIB};
    shmrpc_buf z, back, err;
    shmrpc_buf_init(&z);
    shmrpc_buf_init(&back);
    shmrpc_buf_init(&err);
    for (int i = 0; i < 2; i++) {
        uint16_t used = 0xffff;
        shmrpc_buf_clear(&z);
        assert_int_equal(shmrpc__body_compress(algs[i], shmrpc_bytes_of(text, n), &z, &used), 0);
        assert_int_equal(used, algs[i]);
        assert_true(z.len < n / 4);
        assert_int_equal(shmrpc__body_decompress(algs[i], shmrpc_bytes_of(z.data, z.len),
                                                 (uint32_t)n, &back, &err),
                         0);
        assert_int_equal(back.len, n);
        assert_memory_equal(back.data, text, n);
        /* One byte short of the message's size as the maximum: refused, before inflating. */
        assert_int_equal(shmrpc__body_decompress(algs[i], shmrpc_bytes_of(z.data, z.len),
                                                 (uint32_t)n - 1, &back, &err),
                         SHMRPC_ETOOBIG);
        char want[128];
        snprintf(want, sizeof want,
                 "%s body declares 65536 bytes, above the maximum message of 65535",
                 i == 0 ? "snappy" : "zlib");
        assert_string_equal(shmrpc__msg_get(&err), want);

        /* Incompressible data is sent as it is: nothing appended. */
        shmrpc_buf_clear(&z);
        assert_int_equal(shmrpc__body_compress(algs[i], shmrpc_bytes_of(noise, n), &z, &used), 0);
        assert_int_equal(used, 0);
        assert_int_equal(z.len, 0);
        /* So is an empty message. */
        assert_int_equal(shmrpc__body_compress(algs[i], shmrpc_bytes_of(noise, 0), &z, &used), 0);
        assert_int_equal(used, 0);
    }
    uint16_t used;
    assert_int_equal(shmrpc__body_compress(4, shmrpc_bytes_of(text, n), &z, &used), SHMRPC_EINVAL);
    assert_int_equal(shmrpc__body_decompress(4, shmrpc_bytes_of(text, 8), 100, &back, &err),
                     SHMRPC_EINVAL);

    /* The most compressible input still decodes within the ratio bounds. */
    memset(text, 0, n);
    for (int i = 0; i < 2; i++) {
        shmrpc_buf_clear(&z);
        assert_int_equal(shmrpc__body_compress(algs[i], shmrpc_bytes_of(text, n), &z, &used), 0);
        assert_int_equal(shmrpc__body_decompress(algs[i], shmrpc_bytes_of(z.data, z.len),
                                                 (uint32_t)n, &back, &err),
                         0);
        assert_int_equal(back.len, n);
        assert_memory_equal(back.data, text, n);
    }
    free(text);
    free(noise);
    shmrpc_buf_destroy(&z);
    shmrpc_buf_destroy(&back);
    shmrpc_buf_destroy(&err);
}

typedef struct body_case {
    const char *name;
    uint16_t flag;
    const uint8_t *bytes;
    size_t n;
    uint32_t max;
    int rc;
    const char *msg;
} body_case;

/* snappy's length is a little-endian varint: ff ff ff ff 0f is 4 GiB - 1; 80 80 80 80 10
 * is 4 GiB, which does not fit snappy's 32 bits. */
static const body_case body_cases[] = {
    {"snappy declares 4 GiB - 1", SHMRPC__FLAG_SNAPPY, B("\xff\xff\xff\xff\x0f\x00"), 1u << 26,
     SHMRPC_ETOOBIG,
     "snappy body declares 4294967295 bytes, above the maximum message of 67108864"},
    {"snappy declares 4 GiB", SHMRPC__FLAG_SNAPPY, B("\x80\x80\x80\x80\x10\x00"), UINT32_MAX,
     SHMRPC_EPROTO, "snappy body has a malformed length"},
    {"snappy declares 4 GiB - 1 under a 4 GiB maximum", SHMRPC__FLAG_SNAPPY,
     B("\xff\xff\xff\xff\x0f\x00"), UINT32_MAX, SHMRPC_EPROTO,
     "snappy body of 6 bytes cannot expand to the 4294967295 it declares"},
    {"snappy empty", SHMRPC__FLAG_SNAPPY, B(""), 100, SHMRPC_EPROTO,
     "snappy body has a malformed length"},
    {"snappy declares 0", SHMRPC__FLAG_SNAPPY, B("\x00"), 100, SHMRPC_EPROTO,
     "snappy body declares an empty message"},
    {"snappy garbage", SHMRPC__FLAG_SNAPPY, B("\x0a\xff\xff\xff\xff"), 100, SHMRPC_EPROTO,
     "snappy body does not decompress"},
    {"snappy literal shorter than declared", SHMRPC__FLAG_SNAPPY,
     B("\x0a\x08"
       "abc"),
     100, SHMRPC_EPROTO, "snappy body does not decompress"},
    {"zlib no prefix", SHMRPC__FLAG_ZLIB, B("\x00\x00\x01"), 100, SHMRPC_EPROTO,
     "zlib body of 3 bytes has no room for its length"},
    {"zlib declares 4 GiB - 1", SHMRPC__FLAG_ZLIB, B("\xff\xff\xff\xff\x78\x01"), 1u << 26,
     SHMRPC_ETOOBIG, "zlib body declares 4294967295 bytes, above the maximum message of 67108864"},
    {"zlib declares beyond 1032:1", SHMRPC__FLAG_ZLIB, B("\x00\x01\x00\x00\x78\x01"), 1u << 26,
     SHMRPC_EPROTO, "zlib body of 2 bytes cannot expand to the 65536 it declares"},
    {"zlib declares 0", SHMRPC__FLAG_ZLIB, B("\x00\x00\x00\x00\x78\x01"), 100, SHMRPC_EPROTO,
     "zlib body declares an empty message"},
    {"zlib garbage", SHMRPC__FLAG_ZLIB, B("\x00\x00\x00\x05garbage!"), 100, SHMRPC_EPROTO,
     "zlib body does not decompress: incorrect header check"},
};

static void lying_bodies(void **state)
{
    (void)state;
    shmrpc_buf out, err;
    shmrpc_buf_init(&out);
    shmrpc_buf_init(&err);
    for (size_t i = 0; i < sizeof body_cases / sizeof body_cases[0]; i++) {
        const body_case *c = &body_cases[i];
        shmrpc__msg_clear(&err);
        int rc =
            shmrpc__body_decompress(c->flag, shmrpc_bytes_of(c->bytes, c->n), c->max, &out, &err);
        if (rc != c->rc || strcmp(shmrpc__msg_get(&err), c->msg) != 0)
            fail_msg("%s: got %d '%s', expected %d '%s'", c->name, rc, shmrpc__msg_get(&err), c->rc,
                     c->msg);
        /* Nothing was allocated from a length that failed its checks. */
        if (rc == SHMRPC_ETOOBIG || strstr(c->msg, "cannot expand") ||
            strstr(c->msg, "declares an"))
            assert_true(out.cap <= 64);
    }
    shmrpc_buf_destroy(&out);
    shmrpc_buf_destroy(&err);
}

/* A zlib body whose prefix says more, or less, than its stream holds; one truncated;
 * one with bytes after the stream. */
static void zlib_prefix_lies(void **state)
{
    (void)state;
    const size_t n = 4096;
    uint8_t *text = text_of(n);
    uint8_t body[8192];
    uLongf zn = sizeof body - 4;
    assert_int_equal(compress2(body + 4, &zn, text, n, 6), Z_OK);
    shmrpc_buf out, err;
    shmrpc_buf_init(&out);
    shmrpc_buf_init(&err);
    struct {
        uint32_t declared;
        size_t len;
        const char *msg;
    } cases[] = {
        {4096, 4 + zn, ""},
        {4097, 4 + zn, "zlib body decompressed to 4096 bytes, not the 4097 it declares"},
        {8000, 4 + zn, "zlib body decompressed to 4096 bytes, not the 8000 it declares"},
        {4095, 4 + zn, "zlib body decompresses to more than the 4095 bytes it declares"},
        {100, 4 + zn, "zlib body decompresses to more than the 100 bytes it declares"},
        {4096, 4 + zn - 3, "zlib body is truncated"},
        {4096, 4 + zn + 2, "zlib body has 2 bytes after its stream"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        put_be(body, cases[i].declared, 4);
        body[4 + zn] = 'x';
        body[4 + zn + 1] = 'y';
        shmrpc__msg_clear(&err);
        int rc = shmrpc__body_decompress(SHMRPC__FLAG_ZLIB, shmrpc_bytes_of(body, cases[i].len),
                                         1 << 20, &out, &err);
        assert_string_equal(shmrpc__msg_get(&err), cases[i].msg);
        assert_int_equal(rc, cases[i].msg[0] ? SHMRPC_EPROTO : 0);
        if (rc == 0) assert_memory_equal(out.data, text, n);
    }
    free(text);
    shmrpc_buf_destroy(&out);
    shmrpc_buf_destroy(&err);
}

/* A snappy body that decompresses to fewer bytes than it declares: snappy itself
 * refuses it, and a longer stream too. */
static void snappy_length_lies(void **state)
{
    (void)state;
    const size_t n = 4096;
    uint8_t *text = text_of(n);
    size_t zn = snappy_max_compressed_length(n);
    uint8_t *z = malloc(zn + 8);
    assert_non_null(z);
    assert_int_equal(snappy_compress((const char *)text, n, (char *)z + 8, &zn), SNAPPY_OK);
    /* The stream starts with the varint 4096 = 80 20; replace it with 4097 (81 20) and
     * with 4095 (ff 1f). */
    assert_int_equal(z[8], 0x80);
    assert_int_equal(z[9], 0x20);
    shmrpc_buf out, err;
    shmrpc_buf_init(&out);
    shmrpc_buf_init(&err);
    assert_int_equal(shmrpc__body_decompress(SHMRPC__FLAG_SNAPPY, shmrpc_bytes_of(z + 8, zn),
                                             1 << 20, &out, &err),
                     0);
    assert_memory_equal(out.data, text, n);
    z[8] = 0x81;
    assert_int_equal(shmrpc__body_decompress(SHMRPC__FLAG_SNAPPY, shmrpc_bytes_of(z + 8, zn),
                                             1 << 20, &out, &err),
                     SHMRPC_EPROTO);
    assert_string_equal(shmrpc__msg_get(&err), "snappy body does not decompress");
    z[8] = 0xff;
    z[9] = 0x1f;
    assert_int_equal(shmrpc__body_decompress(SHMRPC__FLAG_SNAPPY, shmrpc_bytes_of(z + 8, zn),
                                             1 << 20, &out, &err),
                     SHMRPC_EPROTO);
    free(z);
    free(text);
    shmrpc_buf_destroy(&out);
    shmrpc_buf_destroy(&err);
}

/* --- the handshake --- */

#define METHOD(n, i, fp, sig)                                                                      \
    {                                                                                              \
        n, i, SHMRPC_ENC_MSGPACK, fp, sig                                                          \
    }
static const shmrpc_method_info server_methods[] = {
    METHOD("add", 0, 0x11, "i64 add(i64 a, i64 b)"),
    METHOD("echo", 1, 0x22, "bytes echo(bytes data)"),
    METHOD("stats", 2, 0x33, "string stats()"),
};
/* An older client: lacks stats. */
static const shmrpc_method_info old_methods[] = {
    METHOD("add", 0, 0x11, "i64 add(i64 a, i64 b)"),
    METHOD("echo", 1, 0x22, "bytes echo(bytes data)"),
};
/* A client whose add changed and which has a method the server lacks. */
static const shmrpc_method_info other_methods[] = {
    METHOD("add", 0, 0x99, "f64 add(f64 a, f64 b)"),
    METHOD("echo", 1, 0x22, "bytes echo(bytes data)"),
    METHOD("reset", 2, 0x44, "void reset()"),
};

static shmrpc_service_info info_of(const char *name, const shmrpc_method_info *m, uint32_t n)
{
    return (shmrpc_service_info){
        SHMRPC_SERVICE_MAGIC, SHMRPC_DESCRIPTOR_VERSION, name, name, 0, 0xfeed, n, m, 0, NULL};
}

static void write_hello(shmrpc_buf *out, unsigned kind, const shmrpc__hello *h)
{
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    shmrpc_buf_clear(out);
    assert_int_equal(shmrpc__hello_write(out, kind, h, &err), 0);
    shmrpc_buf_destroy(&err);
}

static void assert_same_info(const shmrpc_service_info *a, const shmrpc_service_info *b)
{
    assert_string_equal(a->name, b->name);
    assert_true(a->fingerprint == b->fingerprint);
    assert_int_equal(a->n_methods, b->n_methods);
    for (uint32_t i = 0; i < a->n_methods; i++) {
        assert_string_equal(a->methods[i].name, b->methods[i].name);
        assert_string_equal(a->methods[i].signature, b->methods[i].signature);
        assert_int_equal(a->methods[i].id, b->methods[i].id);
        assert_int_equal(a->methods[i].encoding, b->methods[i].encoding);
        assert_true(a->methods[i].fingerprint == b->methods[i].fingerprint);
    }
}

static void handshake_round_trip(void **state)
{
    (void)state;
    shmrpc_arena *a = shmrpc_arena_new(0);
    shmrpc_buf body, err;
    shmrpc_buf_init(&body);
    shmrpc_buf_init(&err);
    const shmrpc_service_info server = info_of("Calc", server_methods, 3);

    shmrpc__hello hello = {.proto = SHMRPC__WIRE_PROTO,
                           .info = info_of("Calc", old_methods, 2),
                           .compression = SHMRPC__FLAG_SNAPPY | SHMRPC__FLAG_ZLIB,
                           .threshold = 100,
                           .max_msg = 1 << 20};
    write_hello(&body, SHMRPC__KIND_HELLO, &hello);
    assert_true(body.len < 200);

    /* The server parses it and answers. */
    shmrpc__hello got, ack, got_ack;
    assert_int_equal(shmrpc__hello_parse(shmrpc_bytes_of(body.data, body.len), SHMRPC__KIND_HELLO,
                                         a, &got, &err),
                     0);
    assert_same_info(&got.info, &hello.info);
    assert_int_equal(got.proto, SHMRPC__WIRE_PROTO);
    assert_int_equal(got.compression, 3);
    assert_int_equal(got.threshold, 100);
    assert_int_equal(got.max_msg, 1 << 20);
    assert_int_equal(got.auth.len, 0);
    assert_int_equal(shmrpc__hello_answer(&got, &server, SHMRPC__FLAG_ZLIB,
                                          SHMRPC__WIRE_DEFAULT_THRESHOLD, 1 << 26, a, &ack, &err),
                     0);
    assert_int_equal(ack.compression, SHMRPC__FLAG_ZLIB); /* snappy not allowed here */
    assert_int_equal(ack.threshold, SHMRPC__WIRE_DEFAULT_THRESHOLD);

    /* The client parses the ack and maps its ids to the server's. */
    write_hello(&body, SHMRPC__KIND_HELLO_ACK, &ack);
    assert_int_equal(shmrpc__hello_parse(shmrpc_bytes_of(body.data, body.len),
                                         SHMRPC__KIND_HELLO_ACK, a, &got_ack, &err),
                     0);
    assert_same_info(&got_ack.info, &server);
    assert_int_equal(got_ack.max_msg, 1 << 26);
    assert_int_equal(shmrpc__hello_accept(&hello, &got_ack, &err), 0);
    uint32_t map[2] = {99, 99};
    shmrpc__table t = {.arena = shmrpc_arena_new(0)};
    assert_int_equal(shmrpc__table_accept(&hello.info, &got_ack.info, map, &t, &err), 0);
    assert_int_equal(map[0], 0);
    assert_int_equal(map[1], 1);
    assert_same_info(&t.info, &server);
    shmrpc_arena_free(t.arena);

    /* Snappy is preferred when both are allowed; nothing when nothing is common. */
    assert_int_equal(shmrpc__hello_answer(&got, &server, 3, 0, 1 << 26, a, &ack, &err), 0);
    assert_int_equal(ack.compression, SHMRPC__FLAG_SNAPPY);
    assert_int_equal(ack.threshold, 100);
    got.compression = SHMRPC__FLAG_ZLIB;
    assert_int_equal(shmrpc__hello_answer(&got, &server, SHMRPC__FLAG_SNAPPY, 0, 1, a, &ack, &err),
                     0);
    assert_int_equal(ack.compression, 0);

    /* An ack that chose what was not offered, or a later revision; its auth slot is the
     * transport's to check. */
    got_ack.compression = SHMRPC__FLAG_SNAPPY;
    hello.compression = SHMRPC__FLAG_ZLIB;
    assert_int_equal(shmrpc__hello_accept(&hello, &got_ack, &err), SHMRPC_EPROTO);
    assert_string_equal(shmrpc__msg_get(&err),
                        "the server chose snappy compression, which the client did not offer");
    got_ack.compression = 0;
    got_ack.proto = SHMRPC__WIRE_PROTO + 1;
    assert_int_equal(shmrpc__hello_accept(&hello, &got_ack, &err), SHMRPC_EPROTO);
    assert_string_equal(shmrpc__msg_get(&err),
                        "the server chose protocol revision 10; the client offered 1 to 9");
    got_ack.proto = 1;
    got_ack.compression = 4; /* a bit no revision defines */
    assert_int_equal(shmrpc__hello_accept(&hello, &got_ack, &err), SHMRPC_EPROTO);
    assert_string_equal(shmrpc__msg_get(&err),
                        "the server chose unknown compression, which the client did not offer");
    got_ack.compression = 0;
    got_ack.proto = 0;
    assert_int_equal(shmrpc__hello_accept(&hello, &got_ack, &err), SHMRPC_EPROTO);
    assert_string_equal(shmrpc__msg_get(&err),
                        "the server chose protocol revision 0; the client offered 1 to 9");
    got_ack.proto = 1;
    got_ack.auth = shmrpc_bytes_of("nonce", 5);
    assert_int_equal(shmrpc__hello_accept(&hello, &got_ack, &err), 0);

    /* The auth slot travels. */
    hello.auth = shmrpc_bytes_of("0123456789abcdef", 16);
    write_hello(&body, SHMRPC__KIND_HELLO, &hello);
    assert_int_equal(shmrpc__hello_parse(shmrpc_bytes_of(body.data, body.len), SHMRPC__KIND_HELLO,
                                         a, &got, &err),
                     0);
    assert_int_equal(got.auth.len, 16);
    assert_memory_equal(got.auth.ptr, "0123456789abcdef", 16);

    /* The parsed tables live in the arena, bounded by the body. */
    assert_true(shmrpc_arena_used(a) < 8 * 4 * 200);
    shmrpc_arena_free(a);
    shmrpc_buf_destroy(&body);
    shmrpc_buf_destroy(&err);
}

static void handshake_mismatch(void **state)
{
    (void)state;
    shmrpc_arena *a = shmrpc_arena_new(0);
    shmrpc_buf body, err;
    shmrpc_buf_init(&body);
    shmrpc_buf_init(&err);
    const shmrpc_service_info server = info_of("Calc", server_methods, 3);
    shmrpc__hello hello = {.proto = 1, .info = info_of("Calc", other_methods, 3), .max_msg = 100};
    write_hello(&body, SHMRPC__KIND_HELLO, &hello);
    shmrpc__hello got, ack;
    assert_int_equal(shmrpc__hello_parse(shmrpc_bytes_of(body.data, body.len), SHMRPC__KIND_HELLO,
                                         a, &got, &err),
                     0);
    const char *want = "method table differs from the server's: 'add' has another signature, "
                       "incompatible: the client's signature, at byte 3: expected '(' (client: "
                       "f64 add(f64 a, f64 b), server: i64 add(i64 a, i64 b)); 'reset' is "
                       "missing on the server";
    assert_int_equal(shmrpc__hello_answer(&got, &server, 3, 0, 100, a, &ack, &err),
                     SHMRPC_EMISMATCH);
    assert_string_equal(shmrpc__msg_get(&err), want);

    /* The client sees the same from the server's ack. */
    shmrpc__hello sack = {.proto = 1, .info = server, .max_msg = 100};
    write_hello(&body, SHMRPC__KIND_HELLO_ACK, &sack);
    assert_int_equal(shmrpc__hello_parse(shmrpc_bytes_of(body.data, body.len),
                                         SHMRPC__KIND_HELLO_ACK, a, &ack, &err),
                     0);
    uint32_t map[3];
    shmrpc__table t = {.arena = shmrpc_arena_new(0)};
    assert_int_equal(shmrpc__hello_accept(&hello, &ack, &err), 0);
    assert_int_equal(shmrpc__table_accept(&hello.info, &ack.info, map, &t, &err), SHMRPC_EMISMATCH);
    assert_string_equal(shmrpc__msg_get(&err), want);
    assert_null(t.info.name); /* a table that does not map is not kept */

    /* Another service altogether says so. */
    hello.info = info_of("Kv", old_methods + 1, 1);
    hello.info.methods = other_methods + 2;
    assert_int_equal(shmrpc__table_accept(&hello.info, &ack.info, map, &t, &err), SHMRPC_EMISMATCH);
    assert_string_equal(shmrpc__msg_get(&err),
                        "method table differs from the server's: 'reset' is missing on the "
                        "server (the server serves 'Calc', not 'Kv')");
    shmrpc_arena_free(t.arena);
    shmrpc_arena_free(a);
    shmrpc_buf_destroy(&body);
    shmrpc_buf_destroy(&err);
}

/* Hand-made bodies with one thing wrong each. */
typedef struct hello_case {
    const char *name;
    const uint8_t *bytes;
    size_t n;
    unsigned kind;
    const char *msg;
} hello_case;

/* [1, "S", 7, [entries], 0, 0, 100, nil] with the entries spelled out. */
#define HEAD "\x98\x01\xa1S\x07"
#define TAIL "\x00\x00\x64\xc0"
static const hello_case hello_cases[] = {
    {"empty", B(""), HELLO, "HELLO body, the body: truncated"},
    {"a map", B("\x80"), HELLO, "HELLO body, the body: expected array, got map"},
    {"short array", B("\x93\x01\xa1S\x07"), HELLO,
     "HELLO body has 3 elements, expected at least 8"},
    {"proto string", B("\x98\xa1x\xc0\xc0\xc0\xc0\xc0\xc0"), HELLO,
     "HELLO body, element 'proto': expected integer, got string"},
    {"empty service", B("\x98\x01\xa0\xc0\xc0\xc0\xc0\xc0\xc0"), ACK,
     "HELLO_ACK body, element 'service': empty string"},
    {"service with NUL", B("\x98\x01\xa2S\x00\xc0\xc0\xc0\xc0\xc0"), HELLO,
     "HELLO body, element 'service': string holds a NUL byte"},
    {"service too long", B("\x98\x01\xd9\xff\xc0\xc0\xc0\xc0\xc0\xc0"), HELLO,
     "HELLO body, element 'service': truncated"},
    {"count beyond the body", B(HEAD "\xdd\x00\x01\x00\x00" TAIL), HELLO,
     "HELLO body, element 'methods': count larger than the bytes left"},
    {"entry too short",
     B(HEAD "\x91\x94\x00\xa1"
            "a\x01\x00" TAIL),
     HELLO, "HELLO body, method 0, the entry: fewer than 5 elements"},
    {"encoding 3",
     B(HEAD "\x91\x95\x00\xa1"
            "a\x01\x03\xa0" TAIL),
     HELLO, "HELLO body, method 0, encoding: integer out of range"},
    {"negative fingerprint",
     B(HEAD "\x91\x95\x00\xa1"
            "a\xff\x00\xa0" TAIL),
     HELLO, "HELLO body, method 0, fingerprint: integer out of range for u64"},
    {"id not its index",
     B(HEAD "\x91\x95\x01\xa1"
            "a\x01\x00\xa0" TAIL),
     HELLO, "HELLO body: service 'S': method 'a' has id 1 at index 0"},
    {"unsorted",
     B(HEAD "\x92\x95\x00\xa1"
            "b\x01\x00\xa0\x95\x01\xa1"
            "a\x01\x00\xa0" TAIL),
     HELLO, "HELLO body: service 'S': method table is not sorted by name ('b' before 'a')"},
    {"duplicate",
     B(HEAD "\x92\x95\x00\xa1"
            "a\x01\x00\xa0\x95\x01\xa1"
            "a\x01\x00\xa0" TAIL),
     HELLO, "HELLO body: service 'S': method table is not sorted by name ('a' before 'a')"},
    {"ack with two compressions", B(HEAD "\x90\x03\x00\x64\xc0"), ACK,
     "HELLO_ACK body chooses compression 0x0003, not one known algorithm"},
    {"max_msg 0", B(HEAD "\x90\x00\x00\x00\xc0"), HELLO, "HELLO body has a maximum message of 0"},
    {"max_msg above u32", B(HEAD "\x90\x00\x00\xcf\x00\x00\x00\x01\x00\x00\x00\x00\xc0"), HELLO,
     "HELLO body, element 'max_msg': integer out of range for u32"},
    {"proto 0", B("\x98\x00\xa1S\x07\x90" TAIL), HELLO, "HELLO body has protocol revision 0"},
    {"auth string", B(HEAD "\x90\x00\x00\x64\xa1x"), HELLO,
     "HELLO body, element 'auth': expected binary, got string"},
    {"trailing", B(HEAD "\x90" TAIL "\x00"), HELLO, "HELLO body, the body: trailing bytes"},
    {"truncated types", B("\x99\x01\xa1S\x07\x90" TAIL), HELLO,
     "HELLO body, element 'types': truncated"},
    {"truncated extra", B("\x9a\x01\xa1S\x07\x90" TAIL "\x90"), HELLO,
     "HELLO body, the body: truncated"},
    /* Revision 6's types: a count checked against the bytes left before anything is
     * allocated for it, strings only (what they say is the codec's to check). */
    {"10^9 types claimed", B("\x99\x01\xa1S\x07\x90" TAIL "\xdd\x3b\x9a\xca\x00\xa1x"), HELLO,
     "HELLO body, element 'types': count larger than the bytes left"},
    {"types a map", B("\x99\x01\xa1S\x07\x90" TAIL "\x80"), HELLO,
     "HELLO body, element 'types': expected array, got map"},
    {"a type not a string", B("\x99\x01\xa1S\x07\x90" TAIL "\x91\x01"), HELLO,
     "HELLO body, type 0: expected string, got integer"},
    {"a type with a NUL", B("\x99\x01\xa1S\x07\x90" TAIL "\x91\xa2x\x00"), HELLO,
     "HELLO body, type 0: string holds a NUL byte"},
    /* What the types say: the table reader's (codec/dynamic_types.c) refusals. */
    {"a type described twice", B("\x99\x01\xa1S\x07\x90" TAIL "\x92\xaastruct A{}\xaastruct A{}"),
     HELLO, "HELLO body: types, 'A': described twice"},
    {"a cycle of types",
     B("\x99\x01\xa1S\x07\x90" TAIL "\x92\xb5struct A{struct B b;}\xb5struct B{struct A a;}"),
     HELLO,
     "HELLO body: types, 'A': holds itself through 'B' with no list, map or optional between (a "
     "value of it would never end)"},
    {"a missing type", B("\x99\x01\xa1S\x07\x90" TAIL "\x91\xb5struct A{struct C c;}"), ACK,
     "HELLO_ACK body: types, 'A': description, at byte 17: 'C' is not among the table's types"},
    {"not a handshake", B(HEAD "\x90" TAIL), REQ, "REQUEST is not a handshake frame"},
};

static void malformed_hellos(void **state)
{
    (void)state;
    shmrpc_arena *a = shmrpc_arena_new(0);
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    shmrpc__hello h;
    int failed = 0;
    for (size_t i = 0; i < sizeof hello_cases / sizeof hello_cases[0]; i++) {
        const hello_case *c = &hello_cases[i];
        shmrpc__msg_clear(&err);
        int rc = shmrpc__hello_parse(shmrpc_bytes_of(c->bytes, c->n), c->kind, a, &h, &err);
        int want = c->kind == REQ ? SHMRPC_EINVAL : SHMRPC_EPROTO;
        if (rc != want || strcmp(shmrpc__msg_get(&err), c->msg) != 0)
            print_error("%s: got %d '%s', expected %d '%s'\n", c->name, rc, shmrpc__msg_get(&err),
                        want, c->msg),
                failed++;
    }
    assert_int_equal(failed, 0);
    /* Well formed, with extra elements (a later revision's) skipped, also nested ones. */
    static const uint8_t ok[] = HEAD "\x91\x96\x00\xa1"
                                     "a\x01\x00\xa3sig\x81\xa1k\x92\xd4\x01\x02\xcb"
                                     "12345678" TAIL;
    assert_int_equal(shmrpc__hello_parse(shmrpc_bytes_of(ok, sizeof ok - 1), HELLO, a, &h, &err),
                     0);
    assert_int_equal(h.info.n_methods, 1);
    assert_string_equal(h.info.methods[0].signature, "sig");
    static const uint8_t extra[] =
        "\x9b\x01\xa1S\x07\x90" TAIL "\x90\xc7\x02\x05xy\x93\x01\xc3\xc4\x01z";
    assert_int_equal(
        shmrpc__hello_parse(shmrpc_bytes_of(extra, sizeof extra - 1), ACK, a, &h, &err), 0);
    shmrpc_arena_free(a);
    shmrpc_buf_destroy(&err);
}

/* Readers skip the elements a later revision appends (docs/wire.md, "The handshake"), of
 * every msgpack type, in the body, in a method entry and in an ERROR body; an element that
 * is no msgpack value, or one cut short, is refused with what was wrong. */
typedef struct extra_case {
    const char *name;
    const uint8_t *bytes;
    size_t n;
} extra_case;

static const extra_case good_extras[] = {
    {"fixmap", B("\x81\x01\x02")},
    {"map16", B("\xde\x00\x01\x01\xc0")},
    {"map32", B("\xdf\x00\x00\x00\x00")},
    {"fixarray", B("\x92\x01\x02")},
    {"array16", B("\xdc\x00\x01\xc0")},
    {"array32", B("\xdd\x00\x00\x00\x00")},
    {"positive fixint", B("\x05")},
    {"negative fixint", B("\xe0")},
    {"uint8", B("\xcc\xff")},
    {"uint16", B("\xcd\x01\x00")},
    {"uint32", B("\xce\x00\x00\x00\x01")},
    {"uint64", B("\xcf\xff\xff\xff\xff\xff\xff\xff\xff")},
    {"int8", B("\xd0\x80")},
    {"int16", B("\xd1\x80\x00")},
    {"int32", B("\xd2\x80\x00\x00\x00")},
    {"int64", B("\xd3\x80\x00\x00\x00\x00\x00\x00\x00")},
    {"fixstr", B("\xa2hi")},
    {"str8", B("\xd9\x01x")},
    {"str16", B("\xda\x00\x01x")},
    {"str32", B("\xdb\x00\x00\x00\x01x")},
    {"bin8", B("\xc4\x01z")},
    {"bin16", B("\xc5\x00\x01z")},
    {"bin32", B("\xc6\x00\x00\x00\x01z")},
    {"false", B("\xc2")},
    {"true", B("\xc3")},
    {"float32", B("\xca\x3f\x80\x00\x00")},
    {"float64", B("\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00")},
    {"nil", B("\xc0")},
    {"fixext1", B("\xd4\x01\x02")},
    {"fixext2", B("\xd5\x01\x02\x03")},
    {"fixext4", B("\xd6\x01\x02\x03\x04\x05")},
    {"fixext8", B("\xd7\x01"
                  "12345678")},
    {"fixext16", B("\xd8\x01"
                   "0123456789abcdef")},
    {"ext8", B("\xc7\x02\x05xy")},
    {"ext16", B("\xc8\x00\x01\x05x")},
    {"ext32", B("\xc9\x00\x00\x00\x01\x05x")},
};

static const struct {
    const char *name;
    const uint8_t *bytes;
    size_t n;
    const char *why;
} bad_extras[] = {
    {"never used byte", B("\xc1"), "invalid msgpack byte"},
    {"fixext16 cut short",
     B("\xd8\x01"
       "0123456789abcde"),
     "truncated"},
    {"fixext1 without data", B("\xd4\x01"), "truncated"},
    {"ext8 without its type", B("\xc7\x01"), "truncated"},
    {"ext16 without its length", B("\xc8\x00"), "truncated"},
    {"ext8 longer than the body", B("\xc7\x05\x01xy"), "truncated"},
    {"ext32 longer than the body", B("\xc9\x00\x01\x00\x00\x05x"), "truncated"},
    {"float64 cut short", B("\xcb\x3f\xf0"), "truncated"},
    {"map without its value", B("\x81\x01"), "count larger than the bytes left"},
};

/* [1, "S", 7, [entry], 0, 0, 100, nil, extra...] with n_extra extras in the body, or in
 * the one method entry ("a", no signature) when in_entry. */
static void put_with_extras(shmrpc_buf *b, const uint8_t *extra, size_t n, uint32_t n_extra,
                            bool in_entry)
{
    shmrpc_buf_clear(b);
    /* In the body, after revision 6's types (none). */
    uint8_t top = (uint8_t)(0x90 | (8 + (in_entry ? 0 : 1 + n_extra)));
    uint8_t entry = (uint8_t)(0x90 | (5 + (in_entry ? n_extra : 0)));
    assert_int_equal(shmrpc_buf_append(b, &top, 1), 0);
    assert_int_equal(shmrpc_buf_append(b, "\x01\xa1S\x07\x91", 5), 0);
    assert_int_equal(shmrpc_buf_append(b, &entry, 1), 0);
    assert_int_equal(shmrpc_buf_append(b,
                                       "\x00\xa1"
                                       "a\x01\x00\xa0",
                                       6),
                     0);
    if (in_entry) assert_int_equal(shmrpc_buf_append(b, extra, n), 0);
    assert_int_equal(shmrpc_buf_append(b, TAIL, 4), 0);
    if (!in_entry) assert_int_equal(shmrpc_buf_append(b, "\x90", 1), 0);
    if (!in_entry) assert_int_equal(shmrpc_buf_append(b, extra, n), 0);
}

static void elements_of_a_later_revision(void **state)
{
    (void)state;
    shmrpc_arena *a = shmrpc_arena_new(0);
    shmrpc_buf body, err, all;
    shmrpc_buf_init(&body);
    shmrpc_buf_init(&err);
    shmrpc_buf_init(&all);
    shmrpc__hello h;
    const size_t n_good = sizeof good_extras / sizeof good_extras[0];
    for (int in_entry = 0; in_entry < 2; in_entry++) {
        for (size_t i = 0; i < n_good; i++) {
            put_with_extras(&body, good_extras[i].bytes, good_extras[i].n, 1, in_entry);
            shmrpc__msg_clear(&err);
            if (shmrpc__hello_parse(shmrpc_bytes_of(body.data, body.len), HELLO, a, &h, &err))
                fail_msg("%s %s: %s", good_extras[i].name, in_entry ? "in an entry" : "in the body",
                         shmrpc__msg_get(&err));
            assert_int_equal(h.proto, 1);
            assert_int_equal(h.max_msg, 100);
            assert_int_equal(h.info.n_methods, 1);
            assert_string_equal(h.info.methods[0].name, "a");
        }
        /* In an entry, one cut short would run into the elements after it: the byte
         * that is no value stands for those. */
        size_t n_bad = in_entry ? 1 : sizeof bad_extras / sizeof bad_extras[0];
        for (size_t i = 0; i < n_bad; i++) {
            put_with_extras(&body, bad_extras[i].bytes, bad_extras[i].n, 1, in_entry);
            shmrpc__msg_clear(&err);
            int rc = shmrpc__hello_parse(shmrpc_bytes_of(body.data, body.len), HELLO, a, &h, &err);
            char want[128];
            if (in_entry)
                snprintf(want, sizeof want, "HELLO body, method 0, the entry: %s",
                         bad_extras[i].why);
            else
                snprintf(want, sizeof want, "HELLO body, the body: %s", bad_extras[i].why);
            if (rc != SHMRPC_EPROTO || strcmp(shmrpc__msg_get(&err), want) != 0)
                fail_msg("%s %s: got %d '%s', expected '%s'", bad_extras[i].name,
                         in_entry ? "in an entry" : "in the body", rc, shmrpc__msg_get(&err), want);
        }
    }
    /* All of them at once, after a message of an ERROR body too. */
    for (size_t i = 0; i < n_good; i++)
        assert_int_equal(shmrpc_buf_append(&all, good_extras[i].bytes, good_extras[i].n), 0);
    put_with_extras(&body, all.data, all.len, (uint32_t)n_good, false);
    body.data[0] = 0xdc; /* array16 of 8 + the types + n_good */
    uint8_t count[2] = {0, (uint8_t)(9 + n_good)};
    shmrpc_buf fixed;
    shmrpc_buf_init(&fixed);
    assert_int_equal(shmrpc_buf_append(&fixed, body.data, 1), 0);
    assert_int_equal(shmrpc_buf_append(&fixed, count, 2), 0);
    assert_int_equal(shmrpc_buf_append(&fixed, body.data + 1, body.len - 1), 0);
    assert_int_equal(shmrpc__hello_parse(shmrpc_bytes_of(fixed.data, fixed.len), ACK, a, &h, &err),
                     0);
    assert_int_equal(h.info.n_methods, 1);
    int status;
    shmrpc_str msg;
    shmrpc_buf_clear(&fixed);
    const uint8_t head[] = {0xdc, 0, (uint8_t)(2 + n_good), 0xff, 0xa2, 'n', 'o'};
    assert_int_equal(shmrpc_buf_append(&fixed, head, sizeof head), 0);
    assert_int_equal(shmrpc_buf_append(&fixed, all.data, all.len), 0);
    assert_int_equal(
        shmrpc__error_parse(shmrpc_bytes_of(fixed.data, fixed.len), &status, &msg, &err), 0);
    assert_int_equal(status, -1);
    assert_int_equal(msg.len, 2);
    assert_memory_equal(msg.ptr, "no", 2);
    static const uint8_t bad_error[] = "\x93\xff\xa2no\xc1";
    assert_int_equal(
        shmrpc__error_parse(shmrpc_bytes_of(bad_error, sizeof bad_error - 1), &status, &msg, &err),
        SHMRPC_EPROTO);
    assert_string_equal(shmrpc__msg_get(&err), "ERROR body, the body: invalid msgpack byte");
    shmrpc_buf_destroy(&fixed);
    shmrpc_buf_destroy(&all);
    shmrpc_arena_free(a);
    shmrpc_buf_destroy(&body);
    shmrpc_buf_destroy(&err);
}

/* The bounds of docs/wire.md a parsed body may not pass, one past each: an auth slot of
 * 257 bytes, a signature of 65536, a table of 65536 methods. */
static void hello_bounds(void **state)
{
    (void)state;
    shmrpc_arena *a = shmrpc_arena_new(0);
    shmrpc_buf body, err;
    shmrpc_buf_init(&body);
    shmrpc_buf_init(&err);
    shmrpc__hello h;
    uint8_t fill[SHMRPC__WIRE_MAX_AUTH + 1];
    memset(fill, 'x', sizeof fill);

    assert_int_equal(shmrpc_buf_append(&body, HEAD "\x90\x00\x00\x64\xc5\x01\x01", 12), 0);
    assert_int_equal(shmrpc_buf_append(&body, fill, sizeof fill), 0);
    assert_int_equal(shmrpc__hello_parse(shmrpc_bytes_of(body.data, body.len), HELLO, a, &h, &err),
                     SHMRPC_EPROTO);
    assert_string_equal(shmrpc__msg_get(&err),
                        "HELLO body has an auth slot of 257 bytes, above 256");
    body.data[11] = 0x00; /* 256 bytes: read */
    assert_int_equal(
        shmrpc__hello_parse(shmrpc_bytes_of(body.data, body.len - 1), HELLO, a, &h, &err), 0);
    assert_int_equal(h.auth.len, SHMRPC__WIRE_MAX_AUTH);

    for (uint32_t len = SHMRPC__WIRE_MAX_SIGNATURE; len <= SHMRPC__WIRE_MAX_SIGNATURE + 1; len++) {
        shmrpc_buf_clear(&body);
        assert_int_equal(shmrpc_buf_append(&body,
                                           HEAD "\x91\x95\x00\xa1"
                                                "a\x01\x00\xdb",
                                           13),
                         0);
        uint8_t be[4];
        put_be(be, len, 4);
        assert_int_equal(shmrpc_buf_append(&body, be, 4), 0);
        assert_int_equal(shmrpc__buf_grow(&body, len + 8), 0);
        memset(body.data + body.len, 's', len);
        body.len += len;
        assert_int_equal(shmrpc_buf_append(&body, TAIL, 4), 0);
        shmrpc__msg_clear(&err);
        int rc = shmrpc__hello_parse(shmrpc_bytes_of(body.data, body.len), HELLO, a, &h, &err);
        if (len == SHMRPC__WIRE_MAX_SIGNATURE) {
            assert_int_equal(rc, 0);
            assert_int_equal(strlen(h.info.methods[0].signature), len);
        } else {
            assert_int_equal(rc, SHMRPC_EPROTO);
            assert_string_equal(shmrpc__msg_get(&err),
                                "HELLO body, method 0, signature: string too long");
        }
    }

    /* 65536 entries' worth of bytes, so that only the count is wrong. */
    shmrpc_buf_clear(&body);
    uint32_t n = SHMRPC__WIRE_MAX_METHODS + 1;
    assert_int_equal(shmrpc_buf_append(&body, HEAD "\xdd", 6), 0);
    uint8_t be[4];
    put_be(be, n, 4);
    assert_int_equal(shmrpc_buf_append(&body, be, 4), 0);
    size_t rest = (size_t)n * 7;
    assert_int_equal(shmrpc__buf_grow(&body, rest), 0);
    memset(body.data + body.len, 0xc0, rest);
    body.len += rest;
    assert_int_equal(shmrpc__hello_parse(shmrpc_bytes_of(body.data, body.len), HELLO, a, &h, &err),
                     SHMRPC_EPROTO);
    assert_string_equal(shmrpc__msg_get(&err),
                        "HELLO body has 65536 methods, above the maximum of 65535");
    shmrpc_arena_free(a);
    shmrpc_buf_destroy(&body);
    shmrpc_buf_destroy(&err);
}

/* A handshake parsed in an arena that runs out (a server caps its arena), at each cap in
 * turn, fails with SHMRPC_ENOMEM, never with a protocol error that would blame the peer,
 * until the cap holds it all; so does the answer's map. Also a body's declared length:
 * none in a zlib body too short for it. */
static void hellos_in_a_small_arena(void **state)
{
    (void)state;
    shmrpc_buf body, err;
    shmrpc_buf_init(&body);
    shmrpc_buf_init(&err);
    shmrpc__hello hello = {.proto = SHMRPC__WIRE_PROTO,
                           .info = info_of("Calc", server_methods, 3),
                           .max_msg = 1 << 20,
                           .auth = shmrpc_bytes_of("0123456789abcdef0123456789abcdef", 32)};
    write_hello(&body, SHMRPC__KIND_HELLO, &hello);
    shmrpc__hello got, ack;
    int nomem = 0;
    size_t cap;
    for (cap = 1; cap < 4096; cap++) {
        shmrpc_arena *a = shmrpc_arena_new(0);
        assert_non_null(a);
        shmrpc_arena_set_limit(a, cap);
        shmrpc__msg_clear(&err);
        int rc = shmrpc__hello_parse(shmrpc_bytes_of(body.data, body.len), HELLO, a, &got, &err);
        if (rc == 0) {
            assert_same_info(&got.info, &hello.info);
            shmrpc_arena_free(a);
            break;
        }
        if (rc != SHMRPC_ENOMEM)
            fail_msg("a cap of %zu bytes: %d '%s', not ENOMEM", cap, rc, shmrpc__msg_get(&err));
        nomem++;
        shmrpc_arena_free(a);
    }
    assert_true(cap < 4096);
    assert_true(nomem >= 5); /* the service name, the table, each method's name and signature */
    shmrpc_arena *a = shmrpc_arena_new(0);
    assert_int_equal(
        shmrpc__hello_parse(shmrpc_bytes_of(body.data, body.len), HELLO, a, &got, &err), 0);
    shmrpc_arena *small = shmrpc_arena_new(0);
    shmrpc_arena_set_limit(small, 1);
    const shmrpc_service_info server = info_of("Calc", server_methods, 3);
    assert_int_equal(shmrpc__hello_answer(&got, &server, 0, 0, 1 << 20, small, &ack, &err),
                     SHMRPC_ENOMEM);
    shmrpc_arena_free(small);
    shmrpc_arena_free(a);

    uint64_t declared = 7;
    assert_int_equal(
        shmrpc__body_declared(SHMRPC__FLAG_ZLIB, shmrpc_bytes_of("\x00\x00\x01", 3), &declared),
        SHMRPC_EPROTO);
    assert_int_equal(
        shmrpc__body_declared(SHMRPC__FLAG_ZLIB, shmrpc_bytes_of("\x00\x00\x01\x00", 4), &declared),
        0);
    assert_int_equal(declared, 256);
    shmrpc_buf_destroy(&body);
    shmrpc_buf_destroy(&err);
}

/* Every prefix of a good hello fails cleanly; the arena stays within a bound of the body. */
static void truncated_hellos(void **state)
{
    (void)state;
    shmrpc_buf body, err;
    shmrpc_buf_init(&body);
    shmrpc_buf_init(&err);
    shmrpc__hello hello = {.proto = 1, .info = info_of("Calc", server_methods, 3), .max_msg = 9};
    write_hello(&body, SHMRPC__KIND_HELLO, &hello);
    for (size_t n = 0; n < body.len; n++) {
        shmrpc_arena *a = shmrpc_arena_new(0);
        shmrpc__hello h;
        assert_int_equal(shmrpc__hello_parse(shmrpc_bytes_of(body.data, n), HELLO, a, &h, &err),
                         SHMRPC_EPROTO);
        assert_true(shmrpc_arena_used(a) <= 8 * n + 64);
        shmrpc_arena_free(a);
    }
    shmrpc_buf_destroy(&body);
    shmrpc_buf_destroy(&err);
}

static void hello_write_limits(void **state)
{
    (void)state;
    shmrpc_buf body, err;
    shmrpc_buf_init(&body);
    shmrpc_buf_init(&err);
    char name[SHMRPC__WIRE_MAX_NAME + 2];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    shmrpc__hello h = {.proto = 1, .info = info_of(name, NULL, 0), .max_msg = 1};
    assert_int_equal(shmrpc__hello_write(&body, HELLO, &h, &err), SHMRPC_EINVAL);
    assert_string_equal(shmrpc__msg_get(&err), "the service name must have 1 to 255 bytes");
    name[SHMRPC__WIRE_MAX_NAME] = '\0'; /* exactly at the limit */
    shmrpc_buf_clear(&body);
    assert_int_equal(shmrpc__hello_write(&body, HELLO, &h, &err), 0);
    shmrpc_arena *a = shmrpc_arena_new(0);
    shmrpc__hello got;
    assert_int_equal(
        shmrpc__hello_parse(shmrpc_bytes_of(body.data, body.len), HELLO, a, &got, &err), 0);
    assert_int_equal(strlen(got.info.name), SHMRPC__WIRE_MAX_NAME);
    shmrpc_arena_free(a);

    /* No name, an empty one; a table, a method name, a signature or an auth slot above what
     * the wire carries: nothing is written that the other side would refuse. */
    h.info.name = NULL;
    assert_int_equal(shmrpc__hello_write(&body, HELLO, &h, &err), SHMRPC_EINVAL);
    assert_string_equal(shmrpc__msg_get(&err), "the service name must have 1 to 255 bytes");
    h.info.name = "";
    assert_int_equal(shmrpc__hello_write(&body, HELLO, &h, &err), SHMRPC_EINVAL);
    assert_string_equal(shmrpc__msg_get(&err), "the service name must have 1 to 255 bytes");
    h.info = info_of("Calc", NULL, SHMRPC__WIRE_MAX_METHODS + 1);
    assert_int_equal(shmrpc__hello_write(&body, HELLO, &h, &err), SHMRPC_EINVAL);
    assert_string_equal(shmrpc__msg_get(&err),
                        "service 'Calc' has 65536 methods; the wire carries at most 65535");
    char *sig = malloc(SHMRPC__WIRE_MAX_SIGNATURE + 2);
    assert_non_null(sig);
    memset(sig, 's', SHMRPC__WIRE_MAX_SIGNATURE + 1);
    sig[SHMRPC__WIRE_MAX_SIGNATURE + 1] = '\0';
    name[SHMRPC__WIRE_MAX_NAME] = 'n'; /* 256 bytes */
    shmrpc_method_info m[1] = {METHOD(name, 0, 1, "")};
    h.info = info_of("Calc", m, 1);
    assert_int_equal(shmrpc__hello_write(&body, HELLO, &h, &err), SHMRPC_EINVAL);
    assert_true(strstr(shmrpc__msg_get(&err), "': name or signature too long for the wire"));
    m[0].name = "add";
    m[0].signature = sig;
    assert_int_equal(shmrpc__hello_write(&body, HELLO, &h, &err), SHMRPC_EINVAL);
    assert_string_equal(shmrpc__msg_get(&err),
                        "method 'add': name or signature too long for the wire");
    sig[SHMRPC__WIRE_MAX_SIGNATURE] = '\0'; /* at the limit */
    shmrpc_buf_clear(&body);
    assert_int_equal(shmrpc__hello_write(&body, HELLO, &h, &err), 0);
    free(sig);
    uint8_t auth[SHMRPC__WIRE_MAX_AUTH + 1] = {0};
    h.info = info_of("Calc", NULL, 0);
    h.auth = shmrpc_bytes_of(auth, sizeof auth);
    assert_int_equal(shmrpc__hello_write(&body, HELLO, &h, &err), SHMRPC_EINVAL);
    assert_string_equal(shmrpc__msg_get(&err), "auth slot of 257 bytes is above 256");
    shmrpc_buf_destroy(&body);
    shmrpc_buf_destroy(&err);
}

static void error_bodies(void **state)
{
    (void)state;
    shmrpc_buf body, err;
    shmrpc_buf_init(&body);
    shmrpc_buf_init(&err);
    int status;
    shmrpc_str msg;
    assert_int_equal(shmrpc__error_write(&body, SHMRPC_EHANDLER, SHMRPC_STR("no such key 'k'")), 0);
    assert_int_equal(shmrpc__error_parse(shmrpc_bytes_of(body.data, body.len), &status, &msg, &err),
                     0);
    assert_int_equal(status, SHMRPC_EHANDLER);
    assert_int_equal(msg.len, 15);
    assert_memory_equal(msg.ptr, "no such key 'k'", 15);

    /* An OS error keeps its errno. */
    shmrpc_buf_clear(&body);
    assert_int_equal(shmrpc__error_write(&body, SHMRPC_ESYS(28), SHMRPC_STR("")), 0);
    assert_int_equal(shmrpc__error_parse(shmrpc_bytes_of(body.data, body.len), &status, &msg, &err),
                     0);
    assert_int_equal(status, SHMRPC_ESYS(28));
    assert_int_equal(msg.len, 0);

    /* Long messages are cut at the limit, and not inside a UTF-8 character. */
    char *lng = malloc(SHMRPC__WIRE_MAX_ERRMSG + 10);
    assert_non_null(lng);
    memset(lng, 'x', SHMRPC__WIRE_MAX_ERRMSG + 10);
    memcpy(lng + SHMRPC__WIRE_MAX_ERRMSG - 1, "\xc3\xa9", 2);
    shmrpc_buf_clear(&body);
    shmrpc_str s = {lng, SHMRPC__WIRE_MAX_ERRMSG + 10};
    assert_int_equal(shmrpc__error_write(&body, SHMRPC_EPROTO, s), 0);
    assert_int_equal(shmrpc__error_parse(shmrpc_bytes_of(body.data, body.len), &status, &msg, &err),
                     0);
    assert_int_equal(msg.len, SHMRPC__WIRE_MAX_ERRMSG - 1);
    /* Never inside a character, even in one that never starts: nothing is left. */
    memset(lng, 0x80, SHMRPC__WIRE_MAX_ERRMSG + 10);
    shmrpc_buf_clear(&body);
    assert_int_equal(shmrpc__error_write(&body, SHMRPC_EPROTO, s), 0);
    assert_int_equal(shmrpc__error_parse(shmrpc_bytes_of(body.data, body.len), &status, &msg, &err),
                     0);
    assert_int_equal(msg.len, 0);
    free(lng);
    assert_int_equal(shmrpc__error_write(&body, 0, SHMRPC_STR("ok")), SHMRPC_EINVAL);
    assert_int_equal(shmrpc__error_write(&body, 5, SHMRPC_STR("ok")), SHMRPC_EINVAL);

    static const struct {
        const uint8_t *bytes;
        size_t n;
        const char *msg;
    } bad[] = {
        {B(""), "ERROR body, the body: truncated"},
        {B("\x91\xff"), "ERROR body has 1 elements, expected at least 2"},
        {B("\x92\x00\xa0"), "ERROR body, element 'status': integer out of range"},
        {B("\x92\x05\xa0"), "ERROR body, element 'status': integer out of range"},
        {B("\x92\xd3\x80\x00\x00\x00\x00\x00\x00\x00\xa0"),
         "ERROR body, element 'status': integer out of range"},
        {B("\x92\xff\xc4\x00"), "ERROR body, element 'message': expected string, got binary"},
        {B("\x92\xff\xda\x10\x01"), "ERROR body, element 'message': truncated"},
        {B("\x92\xff\xa0\xc0"), "ERROR body, the body: trailing bytes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        shmrpc__msg_clear(&err);
        assert_int_equal(
            shmrpc__error_parse(shmrpc_bytes_of(bad[i].bytes, bad[i].n), &status, &msg, &err),
            SHMRPC_EPROTO);
        assert_string_equal(shmrpc__msg_get(&err), bad[i].msg);
    }
    /* A message exactly at the limit is read; one byte more is not. */
    uint8_t big[5 + SHMRPC__WIRE_MAX_ERRMSG + 1];
    memcpy(big, "\x92\xff\xda", 3);
    for (uint32_t len = SHMRPC__WIRE_MAX_ERRMSG; len <= SHMRPC__WIRE_MAX_ERRMSG + 1; len++) {
        put_be(big + 3, len, 2);
        memset(big + 5, 'm', len);
        int rc = shmrpc__error_parse(shmrpc_bytes_of(big, 5 + len), &status, &msg, &err);
        assert_int_equal(rc, len == SHMRPC__WIRE_MAX_ERRMSG ? 0 : SHMRPC_EPROTO);
    }
    assert_string_equal(shmrpc__msg_get(&err), "ERROR body, element 'message': string too long");
    shmrpc_buf_destroy(&body);
    shmrpc_buf_destroy(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(malformed_headers),
        cmocka_unit_test(every_kind_round_trips),
        cmocka_unit_test(compression_round_trips),
        cmocka_unit_test(lying_bodies),
        cmocka_unit_test(zlib_prefix_lies),
        cmocka_unit_test(snappy_length_lies),
        cmocka_unit_test(handshake_round_trip),
        cmocka_unit_test(handshake_mismatch),
        cmocka_unit_test(malformed_hellos),
        cmocka_unit_test(truncated_hellos),
        cmocka_unit_test(hello_write_limits),
        cmocka_unit_test(error_bodies),
        cmocka_unit_test(elements_of_a_later_revision),
        cmocka_unit_test(hello_bounds),
        cmocka_unit_test(hellos_in_a_small_arena),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
