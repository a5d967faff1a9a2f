/* SPDX-License-Identifier: MIT */
/* The TCP wire format (docs/wire.md) as a pure codec: frame headers, compressed bodies,
 * handshake and error bodies. No sockets: the transport reads bytes and hands them here. */
#ifndef SHMRPC_FRAME_H
#define SHMRPC_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "rpc/rpc.h"

/* --- the frame header --------------------------------------------------------------- */

#define SHMRPC__FRAME_MAGIC 0x53525057u /* "SRPW" */
#define SHMRPC__FRAME_VERSION 1u
#define SHMRPC__FRAME_HDR_SIZE 24u

enum shmrpc__frame_kind {
    SHMRPC__KIND_HELLO = 1,
    SHMRPC__KIND_HELLO_ACK = 2,
    SHMRPC__KIND_REQUEST = 3,
    SHMRPC__KIND_RESPONSE = 4,
    SHMRPC__KIND_ERROR = 5,
    SHMRPC__KIND_PING = 6,
    SHMRPC__KIND_PONG = 7,
    SHMRPC__KIND_AUTH = 8,  /* a proof of the shared secret, both ways (docs/wire.md) */
    SHMRPC__KIND_DRAIN = 9, /* server, revision 2: no new calls here (docs/wire.md, "Drain") */
    /* client, revision 5: it gave up on the call request_id (docs/wire.md, "Cancellation") */
    SHMRPC__KIND_CANCEL = 10,
    /* server, revision 8: items of the stream request_id opened (docs/wire.md, "Streams") */
    SHMRPC__KIND_ITEMS = 11,
    /* client, revision 8: bytes of the stream request_id's items it has taken (ditto) */
    SHMRPC__KIND_WINDOW = 12,
};

#define SHMRPC__AUTH_LEN 32u /* an AUTH body, a HELLO's nonce and a HELLO_ACK's challenge */

/* Flag bits; a body has at most one compression bit. */
#define SHMRPC__FLAG_SNAPPY 0x0001u
#define SHMRPC__FLAG_ZLIB 0x0002u
#define SHMRPC__FLAG_COMPRESSION (SHMRPC__FLAG_SNAPPY | SHMRPC__FLAG_ZLIB)
/* REQUEST only, revision 3: the client has no other call in flight on the connection and
 * sends none before this one's answer, so the server may run it on its reading thread
 * (docs/wire.md, "Calls in flight"). Allowed only when passed to the decoder as agreed. */
#define SHMRPC__FLAG_LONE 0x0004u
/* REQUEST only, revision 4: the body begins with the time the client gives the call, in ns
 * from when the server reads it (8 bytes, big-endian), before the request (which alone may
 * be compressed): the handler's deadline (docs/wire.md, "Deadlines"). */
#define SHMRPC__FLAG_DEADLINE 0x0008u
#define SHMRPC__DEADLINE_LEN 8u
/* REQUEST only, revision 7: after the deadline (if any), the call's metadata: its length
 * (2 bytes, big-endian, 1 to SHMRPC_METADATA_MAX_BYTES) and that many bytes of rpc/meta.h's
 * encoding, before the request (docs/wire.md, "Metadata"). */
#define SHMRPC__FLAG_META 0x0010u
#define SHMRPC__META_LEN_SIZE 2u
/* REQUEST only, revision 8: the call opens a stream; its answer is ITEMS frames and then
 * the RESPONSE or ERROR that ends it (docs/wire.md, "Streams"). Never with the lone flag. */
#define SHMRPC__FLAG_STREAM 0x0020u
/* ITEMS only, revision 9, from a client: the last of its items of the stream; the body may
 * then be empty (docs/wire.md, "Streams"). */
#define SHMRPC__FLAG_LAST 0x0040u
/* Not bits a frame carries: passed to the decoder with the agreed flags once revision 5
 * was agreed, which allows CANCEL frames, once 8 was, which allows ITEMS, WINDOW and the
 * stream flag, and once 9 was, which allows the last flag. */
#define SHMRPC__AGREED_CANCEL 0x8000u
#define SHMRPC__AGREED_CLIENT_STREAMS 0x2000u
#define SHMRPC__AGREED_STREAMS 0x4000u
/* A stream's window (revision 8): the bytes of items, counted as a 4-byte length and the
 * item, that a server may send beyond what the client granted back. One item larger than
 * that goes alone while nothing else is in transit. */
#define SHMRPC__STREAM_WINDOW 65536u
#define SHMRPC__ITEM_LEN_SIZE 4u   /* an item's length in an ITEMS body (big-endian) */
#define SHMRPC__WINDOW_LEN 4u      /* a WINDOW body: the bytes granted (big-endian) */

typedef struct shmrpc__frame_hdr {
    uint8_t kind;        /* enum shmrpc__frame_kind */
    uint16_t flags;      /* SHMRPC__FLAG_* */
    uint32_t method;     /* REQUEST, RESPONSE, ERROR: the server's method id; else 0 */
    uint64_t request_id; /* chosen by the client; echoed by RESPONSE and ERROR */
    uint32_t body_len;   /* bytes that follow the header */
} shmrpc__frame_hdr;

/* Writes h (magic and version added) in network byte order. */
void shmrpc__frame_hdr_encode(const shmrpc__frame_hdr *h, uint8_t out[SHMRPC__FRAME_HDR_SIZE]);

/* Decodes and checks the n bytes at p. max_body: the largest body the caller accepts (a
 * REQUEST's deadline and metadata, and an item's length, come on top of it); compression:
 * the SHMRPC__FLAG_* bits agreed for this connection (0 before the handshake;
 * SHMRPC__FLAG_LONE once revision 3 was agreed, SHMRPC__FLAG_DEADLINE once 4 was,
 * SHMRPC__AGREED_CANCEL once 5 was, SHMRPC__FLAG_META once 7 was, SHMRPC__AGREED_STREAMS once 8
 * was). SHMRPC_EPROTO (truncated,
 * bad magic, unknown kind or flag bits, a field not allowed for the kind), SHMRPC_EVERSION (another
 * frame version), SHMRPC_ETOOBIG (body above max_body), each with a message in err. h is written
 * only on success. */
int shmrpc__frame_hdr_decode(const uint8_t *p, size_t n, uint32_t max_body, uint16_t compression,
                             shmrpc__frame_hdr *h, shmrpc_buf *err);

/* A frame written in place: begin appends a header and returns its offset in out; the
 * body is appended after it; end fills in the body's length. end returns out's sticky
 * error, or SHMRPC_ETOOBIG for a body beyond UINT32_MAX. */
size_t shmrpc__frame_begin(shmrpc_buf *out, uint8_t kind, uint16_t flags, uint32_t method,
                           uint64_t request_id);
int shmrpc__frame_end(shmrpc_buf *out, size_t at);

/* A REQUEST's deadline (SHMRPC__FLAG_DEADLINE): budget_ns (not negative) as the wire
 * writes it, and back; one above INT64_MAX reads as INT64_MAX. */
void shmrpc__deadline_encode(int64_t budget_ns, uint8_t out[SHMRPC__DEADLINE_LEN]);
int64_t shmrpc__deadline_decode(const uint8_t in[SHMRPC__DEADLINE_LEN]);

/* "HELLO", "REQUEST", ...; "unknown" for anything else. */
const char *shmrpc__frame_kind_name(unsigned kind);

/* --- compressed bodies ---------------------------------------------------------------- */

/* Compresses msg with one SHMRPC__FLAG_* bit (appended to out). *used is that bit, or
 * 0 when compressing would not make the body smaller: then nothing was appended and the
 * caller sends msg as it is. SHMRPC_ETOOBIG for a message beyond UINT32_MAX. */
int shmrpc__body_compress(uint16_t flag, shmrpc_bytes msg, shmrpc_buf *out, uint16_t *used);

/* Decompresses a body whose compression bit is flag into out (cleared first). The
 * declared length is checked against max_msg (SHMRPC_ETOOBIG) and against the most the
 * body could expand to (SHMRPC_EPROTO) before anything is allocated, and the output
 * against the declared length after decompressing (SHMRPC_EPROTO). */
int shmrpc__body_decompress(uint16_t flag, shmrpc_bytes body, uint32_t max_msg, shmrpc_buf *out,
                            shmrpc_buf *err);
/* On failure, memory grown in out for the body is freed (out is left empty), so a refused
 * body does not stay resident in a buffer that lives as long as its connection. */

/* The uncompressed length a body with compression bit flag declares, unchecked (for a
 * caller that must reserve memory before decompressing); SHMRPC_EPROTO when it has none
 * (shmrpc__body_decompress then says why). */
int shmrpc__body_declared(uint16_t flag, shmrpc_bytes body, uint64_t *declared);

/* An ITEMS body (compression bit comp) checked before any item is kept (docs/wire.md,
 * "Streams"): the bytes it declares within credit, the bytes its sender may still send
 * (one item alone may pass it while nothing else is in transit: credit == window), and
 * within the receiver's largest item and its length; each item's length whole, within
 * max_item and the body; nothing after the last. 0 with the items in *items (the body, or
 * decompressed into scratch), how many in *count; else SHMRPC_EPROTO, or SHMRPC_ENOMEM, with
 * err saying what who ("tcp://HOST", "the client") sent for stream rid, above whose
 * ("client's") maximum. */
int shmrpc__items_check(const char *who, const char *whose, uint64_t rid, uint16_t comp,
                        shmrpc_bytes body, int64_t credit, int64_t window, uint64_t max_item,
                        shmrpc_buf *scratch, shmrpc_bytes *items, uint64_t *count, shmrpc_buf *err);

/* --- the handshake -------------------------------------------------------------------- */

/* The handshake's protocol revision (2: DRAIN; 3: the lone flag; 4: the deadline flag;
 * 5: CANCEL; 6: the table's types, and signatures that name them; 7: the metadata flag;
 * 8: streams: the stream flag, ITEMS and WINDOW; 9: client streams: ITEMS from the client,
 * with the last flag, and WINDOW from the server). */
#define SHMRPC__WIRE_PROTO 9u
/* The first revision whose tables carry their types (element 8 of a handshake body). */
#define SHMRPC__WIRE_PROTO_TYPES 6u
#define SHMRPC__WIRE_MAX_HELLO (1u << 20)    /* HELLO / HELLO_ACK body */
#define SHMRPC__WIRE_MAX_NAME 255u           /* service and method names */
#define SHMRPC__WIRE_MAX_SIGNATURE 65535u    /* a method's signature text */
#define SHMRPC__WIRE_MAX_METHODS 65535u      /* methods in a table */
#define SHMRPC__WIRE_MAX_TYPES 65535u        /* structs and enums in a table */
#define SHMRPC__WIRE_MAX_AUTH 256u           /* the reserved auth slot */
#define SHMRPC__WIRE_MAX_ERRMSG 4096u        /* an ERROR frame's message */
#define SHMRPC__WIRE_DEFAULT_THRESHOLD 4096u /* compress bodies of at least this */

/* The body of a HELLO (client) or HELLO_ACK (server). */
typedef struct shmrpc__hello {
    uint32_t proto;           /* HELLO: the newest revision spoken; ACK: the one chosen */
    shmrpc_service_info info; /* name, fingerprint and method table */
    uint16_t compression;     /* HELLO: the flag bits offered; ACK: the one chosen, or 0 */
    uint32_t threshold;       /* HELLO: the smallest body the client would compress;
                               * ACK: the one both sides use */
    uint32_t max_msg;         /* the largest message this side accepts */
    shmrpc_bytes auth;        /* HELLO: the client's nonce; ACK: the server's challenge;
                               * empty (nil) without a shared secret */
} shmrpc__hello;

/* Appends h's body (kind: HELLO or HELLO_ACK) to out; SHMRPC_EINVAL for a table that
 * could not be parsed back (too many methods, names too long). */
int shmrpc__hello_write(shmrpc_buf *out, unsigned kind, const shmrpc__hello *h, shmrpc_buf *err);

/* Parses a HELLO or HELLO_ACK body. Names, signatures and the method table go into a
 * (bounded by the body's size: at most about 7 times it); the table passes
 * shmrpc__info_check, so shmrpc__method_map can run on h->info. auth points into body.
 * SHMRPC_EPROTO with a message naming the element, SHMRPC_ENOMEM. */
int shmrpc__hello_parse(shmrpc_bytes body, unsigned kind, shmrpc_arena *a, shmrpc__hello *h,
                        shmrpc_buf *err);

/* The server's answer to a parsed HELLO: checks the revision (SHMRPC_EVERSION) and the
 * method table (shmrpc__method_map: SHMRPC_EMISMATCH naming each method), and fills ack
 * with the server's table, the compression chosen among those offered and allowed
 * (snappy first), the larger threshold, and max_msg. On failure, send an ERROR frame
 * with the status and err's message. a holds the scratch map. */
int shmrpc__hello_answer(const shmrpc__hello *hello, const shmrpc_service_info *server,
                         uint16_t allowed, uint32_t threshold, uint32_t max_msg, shmrpc_arena *a,
                         shmrpc__hello *ack, shmrpc_buf *err);

/* The client's check of a parsed HELLO_ACK against the HELLO it sent: the revision and
 * compression must be ones it offered (SHMRPC_EPROTO). The auth slots are the
 * transport's to check, and the method table is checked as every transport checks it
 * (shmrpc__table_accept). */
int shmrpc__hello_accept(const shmrpc__hello *hello, const shmrpc__hello *ack, shmrpc_buf *err);

/* --- error bodies --------------------------------------------------------------------- */

/* Appends [status, message]; the message is cut at SHMRPC__WIRE_MAX_ERRMSG bytes.
 * SHMRPC_EINVAL for a status that is not negative. */
int shmrpc__error_write(shmrpc_buf *out, int status, shmrpc_str msg);

/* Parses an ERROR body: status is negative, msg points into body. SHMRPC_EPROTO. */
int shmrpc__error_parse(shmrpc_bytes body, int *status, shmrpc_str *msg, shmrpc_buf *err);

#endif
