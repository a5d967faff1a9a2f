/* SPDX-License-Identifier: MIT */
/* The TCP wire format (docs/wire.md): frame headers, compressed bodies, handshake and
 * error bodies. Every byte comes from a peer we do not trust: each length is checked
 * against a bound before it is used, and nothing is allocated from an unchecked one. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <msgpack.h>
#include <snappy-c.h>
#include <zlib.h>

#include "codec/dyn.h"
#include "transport/tcp/frame.h"

/* --- byte order ----------------------------------------------------------------------- */

static uint64_t load_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void store_be(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = n; i-- > 0; v >>= 8)
        p[i] = (uint8_t)v;
}

/* --- the frame header ----------------------------------------------------------------- */

static const char *const kind_names[] = {
    [SHMRPC__KIND_HELLO] = "HELLO",     [SHMRPC__KIND_HELLO_ACK] = "HELLO_ACK",
    [SHMRPC__KIND_REQUEST] = "REQUEST", [SHMRPC__KIND_RESPONSE] = "RESPONSE",
    [SHMRPC__KIND_ERROR] = "ERROR",     [SHMRPC__KIND_PING] = "PING",
    [SHMRPC__KIND_PONG] = "PONG",       [SHMRPC__KIND_AUTH] = "AUTH",
    [SHMRPC__KIND_DRAIN] = "DRAIN",     [SHMRPC__KIND_CANCEL] = "CANCEL",
    [SHMRPC__KIND_ITEMS] = "ITEMS",     [SHMRPC__KIND_WINDOW] = "WINDOW",
};

const char *shmrpc__frame_kind_name(unsigned kind)
{
    if (kind < sizeof kind_names / sizeof kind_names[0] && kind_names[kind])
        return kind_names[kind];
    return "unknown";
}

static const char *comp_name(unsigned flag)
{
    return flag == SHMRPC__FLAG_SNAPPY ? "snappy" : flag == SHMRPC__FLAG_ZLIB ? "zlib" : "unknown";
}

void shmrpc__frame_hdr_encode(const shmrpc__frame_hdr *h, uint8_t out[SHMRPC__FRAME_HDR_SIZE])
{
    store_be(out, SHMRPC__FRAME_MAGIC, 4);
    out[4] = SHMRPC__FRAME_VERSION;
    out[5] = h->kind;
    store_be(out + 6, h->flags, 2);
    store_be(out + 8, h->method, 4);
    store_be(out + 12, h->request_id, 8);
    store_be(out + 20, h->body_len, 4);
}

static int proto_error(shmrpc_buf *err, const char *fmt, ...) SHMRPC__FMT(2, 3);
static int proto_error(shmrpc_buf *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    shmrpc__msg_vset(err, fmt, ap);
    va_end(ap);
    return SHMRPC_EPROTO;
}

void shmrpc__deadline_encode(int64_t budget_ns, uint8_t out[SHMRPC__DEADLINE_LEN])
{
    store_be(out, budget_ns > 0 ? (uint64_t)budget_ns : 0, SHMRPC__DEADLINE_LEN);
}

int64_t shmrpc__deadline_decode(const uint8_t in[SHMRPC__DEADLINE_LEN])
{
    uint64_t v = load_be(in, SHMRPC__DEADLINE_LEN);
    return v > INT64_MAX ? INT64_MAX : (int64_t)v;
}

/* What each kind allows besides the common checks. */
static int check_kind(const shmrpc__frame_hdr *h, uint16_t agreed, shmrpc_buf *err)
{
    const char *name = shmrpc__frame_kind_name(h->kind);
    unsigned comp = h->flags & SHMRPC__FLAG_COMPRESSION;
    switch (h->kind) {
    case SHMRPC__KIND_ITEMS:
        if (!(agreed & SHMRPC__AGREED_STREAMS))
            return proto_error(err, "%s frame needs protocol revision 8 (not agreed)", name);
        if (h->request_id == 0) return proto_error(err, "%s frame has no request id", name);
        if ((h->flags & SHMRPC__FLAG_LAST) && !(agreed & SHMRPC__AGREED_CLIENT_STREAMS))
            return proto_error(err,
                               "%s frame has the last flag, which needs protocol revision 9 "
                               "(not agreed)",
                               name);
        if (!comp && h->body_len < SHMRPC__ITEM_LEN_SIZE &&
            !(h->body_len == 0 && (h->flags & SHMRPC__FLAG_LAST)))
            return proto_error(err, "%s frame has a body of %u bytes, too short for an item's "
                                    "length",
                               name, h->body_len);
        /* An ITEMS body is compressed as a RESPONSE's is. */
        /* fall through */
    case SHMRPC__KIND_REQUEST:
    case SHMRPC__KIND_RESPONSE:
        if (comp == SHMRPC__FLAG_COMPRESSION)
            return proto_error(err, "%s frame has both the snappy and the zlib flag", name);
        if (comp & ~(unsigned)agreed)
            return proto_error(err, "%s frame is compressed with %s, which was not agreed", name,
                               comp_name(comp));
        if (comp && h->body_len == 0)
            return proto_error(err, "%s frame is compressed but has an empty body", name);
        if ((h->flags & SHMRPC__FLAG_LONE) && !(agreed & SHMRPC__FLAG_LONE))
            return proto_error(err,
                               "%s frame has the lone flag, which needs protocol revision 3 "
                               "(not agreed)",
                               name);
        if ((h->flags & SHMRPC__FLAG_DEADLINE) && !(agreed & SHMRPC__FLAG_DEADLINE))
            return proto_error(err,
                               "%s frame has the deadline flag, which needs protocol revision 4 "
                               "(not agreed)",
                               name);
        if ((h->flags & SHMRPC__FLAG_STREAM) && !(agreed & SHMRPC__AGREED_STREAMS))
            return proto_error(err,
                               "%s frame has the stream flag, which needs protocol revision 8 "
                               "(not agreed)",
                               name);
        if ((h->flags & SHMRPC__FLAG_STREAM) && (h->flags & SHMRPC__FLAG_LONE))
            return proto_error(err, "%s frame has both the lone and the stream flag", name);
        if ((h->flags & SHMRPC__FLAG_META) && !(agreed & SHMRPC__FLAG_META))
            return proto_error(err,
                               "%s frame has the metadata flag, which needs protocol revision 7 "
                               "(not agreed)",
                               name);
        if ((h->flags & SHMRPC__FLAG_META) &&
            h->body_len < ((h->flags & SHMRPC__FLAG_DEADLINE) ? SHMRPC__DEADLINE_LEN : 0) +
                              SHMRPC__META_LEN_SIZE + 1 + (comp != 0))
            return proto_error(err,
                               "%s frame has the metadata flag and a body of %u bytes, too short "
                               "to hold any",
                               name, h->body_len);
        if ((h->flags & SHMRPC__FLAG_DEADLINE) && h->body_len < SHMRPC__DEADLINE_LEN + (comp != 0))
            return proto_error(err,
                               "%s frame has the deadline flag and a body of %u bytes (its "
                               "deadline takes %u%s)",
                               name, h->body_len, SHMRPC__DEADLINE_LEN,
                               comp ? ", and a compressed request at least 1 more" : "");
        return 0;
    case SHMRPC__KIND_PING:
    case SHMRPC__KIND_PONG:
        if (comp) return proto_error(err, "%s frame has a compression flag", name);
        if (h->method) return proto_error(err, "%s frame has method id %u", name, h->method);
        if (h->body_len)
            return proto_error(err, "%s frame has a body of %u bytes (it has none)", name,
                               h->body_len);
        return 0;
    case SHMRPC__KIND_DRAIN:
        if (comp) return proto_error(err, "%s frame has a compression flag", name);
        if (h->method || h->request_id)
            return proto_error(err, "%s frame has a method or request id", name);
        if (h->body_len)
            return proto_error(err, "%s frame has a body of %u bytes (it has none)", name,
                               h->body_len);
        return 0;
    case SHMRPC__KIND_CANCEL:
        if (!(agreed & SHMRPC__AGREED_CANCEL))
            return proto_error(err, "%s frame needs protocol revision 5 (not agreed)", name);
        if (comp) return proto_error(err, "%s frame has a compression flag", name);
        if (h->method || h->request_id == 0)
            return proto_error(err, "%s frame has a method id or no request id", name);
        if (h->body_len)
            return proto_error(err, "%s frame has a body of %u bytes (it has none)", name,
                               h->body_len);
        return 0;
    case SHMRPC__KIND_WINDOW:
        if (!(agreed & SHMRPC__AGREED_STREAMS))
            return proto_error(err, "%s frame needs protocol revision 8 (not agreed)", name);
        if (comp) return proto_error(err, "%s frame has a compression flag", name);
        if (h->method || h->request_id == 0)
            return proto_error(err, "%s frame has a method id or no request id", name);
        if (h->body_len != SHMRPC__WINDOW_LEN)
            return proto_error(err, "%s frame has a body of %u bytes (it has %u)", name,
                               h->body_len, SHMRPC__WINDOW_LEN);
        return 0;
    case SHMRPC__KIND_AUTH:
        if (comp) return proto_error(err, "%s frame has a compression flag", name);
        if (h->method || h->request_id)
            return proto_error(err, "%s frame has a method or request id", name);
        if (h->body_len != SHMRPC__AUTH_LEN)
            return proto_error(err, "%s frame has a body of %u bytes (it has %u)", name,
                               h->body_len, SHMRPC__AUTH_LEN);
        return 0;
    default: /* HELLO, HELLO_ACK, ERROR */
        if (comp) return proto_error(err, "%s frame has a compression flag", name);
        if (h->kind != SHMRPC__KIND_ERROR && (h->method || h->request_id))
            return proto_error(err, "%s frame has a method or request id", name);
        if (h->body_len == 0) return proto_error(err, "%s frame has an empty body", name);
        return 0;
    }
}

int shmrpc__items_check(const char *who, const char *whose, uint64_t rid, uint16_t comp,
                        shmrpc_bytes body, int64_t credit, int64_t window, uint64_t max_item,
                        shmrpc_buf *scratch, shmrpc_bytes *items, uint64_t *count, shmrpc_buf *err)
{
    uint64_t max_body = max_item + SHMRPC__ITEM_LEN_SIZE;
    if (max_body > UINT32_MAX) max_body = UINT32_MAX;
    /* Credit is counted in bytes before compression, checked on what the body declares
     * before anything is allocated for it. */
    uint64_t declared = body.len;
    if (comp && shmrpc__body_declared(comp, body, &declared) != 0)
        return proto_error(err,
                           "%s sent a compressed ITEMS frame for stream %" PRIu64
                           " whose body declares no length",
                           who, rid);
    bool over = declared > 0 && (int64_t)declared > credit; /* credit may be below 0 */
    if (over && credit != window) /* a large item goes alone only while nothing is in transit */
        return proto_error(err,
                           "%s sent %" PRIu64 " bytes of items for stream %" PRIu64
                           ", beyond its credit of %" PRId64,
                           who, declared, rid, credit);
    if (declared > max_body)
        return proto_error(err,
                           "%s sent an ITEMS frame for stream %" PRIu64 " of %" PRIu64
                           " bytes, above the %s maximum item of %" PRIu64 " and its length",
                           who, rid, declared, whose, max_item);
    if (comp) {
        shmrpc_buf why;
        shmrpc_buf_init(&why);
        int rc = shmrpc__body_decompress(comp, body, (uint32_t)max_body, scratch, &why);
        if (rc)
            shmrpc__msg_set(err, "%s sent an ITEMS frame for stream %" PRIu64 " that %s: %s", who,
                            rid, rc == SHMRPC_ENOMEM ? "found no memory" : "does not decompress",
                            shmrpc__msg_get(&why));
        shmrpc_buf_destroy(&why);
        if (rc) return rc == SHMRPC_ENOMEM ? rc : SHMRPC_EPROTO;
        body = shmrpc_bytes_of(scratch->data, scratch->len);
    }
    const uint8_t *b = body.ptr;
    size_t n = body.len, at = 0;
    uint64_t k = 0;
    while (at < n) {
        if (n - at < SHMRPC__ITEM_LEN_SIZE)
            return proto_error(err,
                               "%s sent an ITEMS frame for stream %" PRIu64
                               " whose item length at offset %zu is cut short (%zu of 4 bytes)",
                               who, rid, at, n - at);
        uint32_t len = (uint32_t)load_be(b + at, SHMRPC__ITEM_LEN_SIZE);
        if (len > max_item)
            return proto_error(err,
                               "%s sent an item of %" PRIu32 " bytes for stream %" PRIu64
                               " at offset %zu, above the %s maximum of %" PRIu64,
                               who, len, rid, at, whose, max_item);
        if (len > n - at - SHMRPC__ITEM_LEN_SIZE)
            return proto_error(err,
                               "%s sent an item of %" PRIu32 " bytes for stream %" PRIu64
                               " at offset %zu, past the end of its ITEMS body of %zu bytes",
                               who, len, rid, at, n);
        at += SHMRPC__ITEM_LEN_SIZE + len;
        k++;
    }
    if (over && k != 1)
        return proto_error(
            err, "%s sent %zu bytes of items for stream %" PRIu64 ", beyond its credit of %" PRId64,
            who, n, rid, credit);
    *items = body;
    *count = k;
    return 0;
}

int shmrpc__frame_hdr_decode(const uint8_t *p, size_t n, uint32_t max_body, uint16_t compression,
                             shmrpc__frame_hdr *out, shmrpc_buf *err)
{
    if (n < SHMRPC__FRAME_HDR_SIZE)
        return proto_error(err, "truncated frame header: %zu of %u bytes", n,
                           SHMRPC__FRAME_HDR_SIZE);
    uint32_t magic = (uint32_t)load_be(p, 4);
    if (magic != SHMRPC__FRAME_MAGIC)
        return proto_error(err, "bad frame magic 0x%08x (expected 0x%08x): not a shmrpc peer",
                           magic, SHMRPC__FRAME_MAGIC);
    if (p[4] != SHMRPC__FRAME_VERSION) {
        shmrpc__msg_set(err, "frame version %u; this side speaks version %u", p[4],
                        SHMRPC__FRAME_VERSION);
        return SHMRPC_EVERSION;
    }
    shmrpc__frame_hdr h = {
        .kind = p[5],
        .flags = (uint16_t)load_be(p + 6, 2),
        .method = (uint32_t)load_be(p + 8, 4),
        .request_id = load_be(p + 12, 8),
        .body_len = (uint32_t)load_be(p + 20, 4),
    };
    if (h.kind < SHMRPC__KIND_HELLO || h.kind > SHMRPC__KIND_WINDOW)
        return proto_error(err, "unknown frame kind %u", h.kind);
    /* The lone, deadline, metadata and stream flags are a REQUEST's only, the last flag an
     * ITEMS frame's; whether they were agreed is check_kind's. */
    uint16_t known = SHMRPC__FLAG_COMPRESSION |
                     (h.kind == SHMRPC__KIND_REQUEST ? SHMRPC__FLAG_LONE | SHMRPC__FLAG_DEADLINE |
                                                           SHMRPC__FLAG_META | SHMRPC__FLAG_STREAM
                      : h.kind == SHMRPC__KIND_ITEMS ? SHMRPC__FLAG_LAST
                                                     : 0);
    if (h.flags & ~known)
        return proto_error(err, "unknown flag bits 0x%04x in a %s frame", h.flags & ~known,
                           shmrpc__frame_kind_name(h.kind));
    int rc = check_kind(&h, compression, err);
    if (rc) return rc;
    /* A request's deadline comes on top of the largest body. */
    uint64_t max = max_body;
    if (h.flags & SHMRPC__FLAG_DEADLINE) max += SHMRPC__DEADLINE_LEN;
    if (h.flags & SHMRPC__FLAG_META) max += SHMRPC__META_LEN_SIZE + SHMRPC_METADATA_MAX_BYTES;
    /* An item of the largest size comes with its length. */
    if (h.kind == SHMRPC__KIND_ITEMS) max += SHMRPC__ITEM_LEN_SIZE;
    if (h.body_len > max) {
        shmrpc__msg_set(err, "%s frame body of %u bytes is above the maximum of %" PRIu64,
                        shmrpc__frame_kind_name(h.kind), h.body_len, max);
        return SHMRPC_ETOOBIG;
    }
    *out = h;
    return 0;
}

size_t shmrpc__frame_begin(shmrpc_buf *out, uint8_t kind, uint16_t flags, uint32_t method,
                           uint64_t request_id)
{
    size_t at = out->len;
    uint8_t hdr[SHMRPC__FRAME_HDR_SIZE];
    shmrpc__frame_hdr h = {kind, flags, method, request_id, 0};
    shmrpc__frame_hdr_encode(&h, hdr);
    shmrpc_buf_append(out, hdr, sizeof hdr);
    return at;
}

int shmrpc__frame_end(shmrpc_buf *out, size_t at)
{
    if (out->err) return out->err;
    if (at > out->len || out->len - at < SHMRPC__FRAME_HDR_SIZE) return SHMRPC_EINVAL;
    size_t body = out->len - at - SHMRPC__FRAME_HDR_SIZE;
    if (body > UINT32_MAX) return SHMRPC_ETOOBIG;
    store_be(out->data + at + 20, body, 4);
    return 0;
}

/* --- compressed bodies -----------------------------------------------------------------
 * The most a body can expand to, so that a small body cannot make us allocate the whole
 * maximum message: a snappy copy element of 3 bytes yields at most 64 (21.4x), and
 * deflate's best case is 1032:1 (zlib's documentation). */
#define SNAPPY_MAX_RATIO 22u
#define ZLIB_MAX_RATIO 1032u
#define ZLIB_PREFIX 4u

static int snappy_compress_body(shmrpc_bytes msg, shmrpc_buf *out, bool *smaller)
{
    size_t cap = snappy_max_compressed_length(msg.len);
    int rc = shmrpc__buf_grow(out, cap);
    if (rc) return rc;
    size_t n = cap;
    if (snappy_compress((const char *)msg.ptr, msg.len, (char *)out->data + out->len, &n) !=
        SNAPPY_OK)
        return SHMRPC_EINVAL;
    *smaller = n < msg.len;
    if (*smaller) out->len += n;
    return 0;
}

static int zlib_compress_body(shmrpc_bytes msg, shmrpc_buf *out, bool *smaller)
{
    uLong bound = compressBound((uLong)msg.len);
    int rc = shmrpc__buf_grow(out, ZLIB_PREFIX + bound);
    if (rc) return rc;
    uint8_t *at = out->data + out->len;
    uLongf n = bound;
    int z = compress2(at + ZLIB_PREFIX, &n, msg.ptr, (uLong)msg.len, Z_BEST_SPEED);
    if (z == Z_MEM_ERROR) return SHMRPC_ENOMEM;
    if (z != Z_OK) return SHMRPC_EINVAL;
    *smaller = ZLIB_PREFIX + n < msg.len;
    if (*smaller) {
        store_be(at, msg.len, ZLIB_PREFIX);
        out->len += ZLIB_PREFIX + n;
    }
    return 0;
}

int shmrpc__body_compress(uint16_t flag, shmrpc_bytes msg, shmrpc_buf *out, uint16_t *used)
{
    *used = 0;
    if (out->err) return out->err;
    if (msg.len > UINT32_MAX) return SHMRPC_ETOOBIG;
    if (msg.len == 0) return 0; /* a compressed body never holds an empty message */
    bool smaller = false;
    int rc;
    if (flag == SHMRPC__FLAG_SNAPPY)
        rc = snappy_compress_body(msg, out, &smaller);
    else if (flag == SHMRPC__FLAG_ZLIB)
        rc = zlib_compress_body(msg, out, &smaller);
    else
        return SHMRPC_EINVAL;
    if (rc == 0 && smaller) *used = flag;
    return rc;
}

/* The checks on a declared length that come before any allocation. */
static int check_declared(const char *alg, uint64_t declared, size_t body_len, unsigned ratio,
                          uint32_t max_msg, shmrpc_buf *err)
{
    if (declared > max_msg) {
        shmrpc__msg_set(err, "%s body declares %" PRIu64 " bytes, above the maximum message of %u",
                        alg, declared, max_msg);
        return SHMRPC_ETOOBIG;
    }
    if (declared == 0) return proto_error(err, "%s body declares an empty message", alg);
    if (declared / ratio > body_len)
        return proto_error(err, "%s body of %zu bytes cannot expand to the %" PRIu64 " it declares",
                           alg, body_len, declared);
    return 0;
}

static int grow_for(shmrpc_buf *out, size_t n, shmrpc_buf *err)
{
    int rc = shmrpc__buf_grow(out, n);
    if (rc) shmrpc__msg_set(err, "cannot hold a decompressed body of %zu bytes", n);
    return rc;
}

static int snappy_decompress_body(shmrpc_bytes body, uint32_t max_msg, shmrpc_buf *out,
                                  shmrpc_buf *err)
{
    size_t declared;
    if (snappy_uncompressed_length((const char *)body.ptr, body.len, &declared) != SNAPPY_OK)
        return proto_error(err, "snappy body has a malformed length");
    int rc = check_declared("snappy", declared, body.len, SNAPPY_MAX_RATIO, max_msg, err);
    if (rc == 0) rc = grow_for(out, declared, err);
    if (rc) return rc;
    size_t got = declared;
    if (snappy_uncompress((const char *)body.ptr, body.len, (char *)out->data, &got) != SNAPPY_OK)
        return proto_error(err, "snappy body does not decompress");
    if (got != declared)
        return proto_error(err, "snappy body decompressed to %zu bytes, not the %zu it declares",
                           got, declared);
    out->len = got;
    return 0;
}

static int zlib_decompress_body(shmrpc_bytes body, uint32_t max_msg, shmrpc_buf *out,
                                shmrpc_buf *err)
{
    if (body.len < ZLIB_PREFIX)
        return proto_error(err, "zlib body of %zu bytes has no room for its length", body.len);
    if (body.len > UINT32_MAX) return proto_error(err, "zlib body is above 4 GiB");
    uint32_t declared = (uint32_t)load_be(body.ptr, ZLIB_PREFIX);
    int rc = check_declared("zlib", declared, body.len - ZLIB_PREFIX, ZLIB_MAX_RATIO, max_msg, err);
    if (rc == 0) rc = grow_for(out, declared, err);
    if (rc) return rc;

    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK) {
        shmrpc__msg_set(err, "cannot start zlib");
        return SHMRPC_ENOMEM;
    }
    zs.next_in = (Bytef *)(uintptr_t)(body.ptr + ZLIB_PREFIX); /* zlib never writes it */
    zs.avail_in = (uInt)(body.len - ZLIB_PREFIX);
    zs.next_out = out->data;
    zs.avail_out = declared;
    int z = inflate(&zs, Z_FINISH);
    size_t got = declared - zs.avail_out;
    size_t left_in = zs.avail_in;
    char why[64];
    snprintf(why, sizeof why, "%s", zs.msg ? zs.msg : "invalid data");
    inflateEnd(&zs);

    if (z == Z_MEM_ERROR) {
        shmrpc__msg_set(err, "zlib ran out of memory");
        return SHMRPC_ENOMEM;
    }
    if (z == Z_STREAM_END) {
        if (left_in) return proto_error(err, "zlib body has %zu bytes after its stream", left_in);
        if (got != declared)
            return proto_error(err, "zlib body decompressed to %zu bytes, not the %u it declares",
                               got, declared);
        out->len = got;
        return 0;
    }
    if (z == Z_BUF_ERROR && left_in == 0) return proto_error(err, "zlib body is truncated");
    if (z == Z_BUF_ERROR)
        return proto_error(err, "zlib body decompresses to more than the %u bytes it declares",
                           declared);
    return proto_error(err, "zlib body does not decompress: %s", why);
}

int shmrpc__body_declared(uint16_t flag, shmrpc_bytes body, uint64_t *declared)
{
    size_t n;
    if (flag == SHMRPC__FLAG_SNAPPY &&
        snappy_uncompressed_length((const char *)body.ptr, body.len, &n) == SNAPPY_OK) {
        *declared = n;
        return 0;
    }
    if (flag == SHMRPC__FLAG_ZLIB && body.len >= ZLIB_PREFIX) {
        *declared = load_be(body.ptr, ZLIB_PREFIX);
        return 0;
    }
    return SHMRPC_EPROTO;
}

int shmrpc__body_decompress(uint16_t flag, shmrpc_bytes body, uint32_t max_msg, shmrpc_buf *out,
                            shmrpc_buf *err)
{
    shmrpc_buf_clear(out);
    size_t had = out->cap;
    int rc;
    if (flag == SHMRPC__FLAG_SNAPPY) {
        rc = snappy_decompress_body(body, max_msg, out, err);
    } else if (flag == SHMRPC__FLAG_ZLIB) {
        rc = zlib_decompress_body(body, max_msg, out, err);
    } else {
        shmrpc__msg_set(err, "unknown compression 0x%04x", flag);
        rc = SHMRPC_EINVAL;
    }
    if (rc && out->cap > had) {
        /* A refused body (a bomb that declared the maximum) leaves nothing behind: what
         * was grown for it is given back, not kept by a buffer reused call after call. */
        size_t max = out->max;
        shmrpc_buf_destroy(out);
        out->max = max;
    }
    return rc;
}

/* --- msgpack helpers ------------------------------------------------------------------ */

static int pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    int rc = msgpack_pack_str(pk, n);
    return rc ? rc : msgpack_pack_str_body(pk, s, n);
}

/* Skips count values (shmrpc_mp_skip: iteratively, nested at most SHMRPC_MAX_DEPTH deep). */
static int skip_values(shmrpc_mp_reader *r, uint64_t count)
{
    return count > UINT32_MAX ? (r->why = "count larger than the bytes left", SHMRPC_EINVAL)
                              : shmrpc_mp_skip(r, (uint32_t)count);
}

/* A failed read of element what: "HELLO body, element 'service': truncated". */
static int body_error(shmrpc_buf *err, const char *kind, const char *what, const char *why)
{
    return proto_error(err, "%s body, %s: %s", kind, what, why ? why : "invalid");
}

/* A string of 1..max bytes without NUL, copied NUL-terminated into a. */
static int read_name(shmrpc_mp_reader *r, size_t max, shmrpc_arena *a, const char **out)
{
    shmrpc_str s;
    if (shmrpc_mp_read_str(r, &s)) return SHMRPC_EINVAL;
    if (s.len == 0) return r->why = "empty string", SHMRPC_EINVAL;
    if (s.len > max) return r->why = "string too long", SHMRPC_EINVAL;
    if (memchr(s.ptr, '\0', s.len)) return r->why = "string holds a NUL byte", SHMRPC_EINVAL;
    char *c = shmrpc_arena_strndup(a, s.ptr, s.len);
    if (!c) return r->why = "out of memory", SHMRPC_ENOMEM;
    *out = c;
    return 0;
}

/* --- the handshake -------------------------------------------------------------------- */

#define HELLO_ELEMENTS 8u
/* Revision 6 appends the table's types, an array of descriptions (element 8). */
#define HELLO_ELEMENTS_6 9u
#define METHOD_ELEMENTS 5u
/* The fewest bytes a method entry takes: array header, id, a one-letter name (2),
 * fingerprint, encoding, empty signature. */
#define METHOD_MIN_BYTES 7u

static int check_writable(const shmrpc__hello *h, shmrpc_buf *err)
{
    const shmrpc_service_info *info = &h->info;
    if (!info->name || !info->name[0] || strlen(info->name) > SHMRPC__WIRE_MAX_NAME) {
        shmrpc__msg_set(err, "the service name must have 1 to %u bytes", SHMRPC__WIRE_MAX_NAME);
        return SHMRPC_EINVAL;
    }
    if (info->n_methods > SHMRPC__WIRE_MAX_METHODS) {
        shmrpc__msg_set(err, "service '%s' has %u methods; the wire carries at most %u", info->name,
                        info->n_methods, SHMRPC__WIRE_MAX_METHODS);
        return SHMRPC_EINVAL;
    }
    for (uint32_t i = 0; i < info->n_methods; i++) {
        const shmrpc_method_info *m = &info->methods[i];
        if (strlen(m->name) > SHMRPC__WIRE_MAX_NAME ||
            strlen(m->signature) > SHMRPC__WIRE_MAX_SIGNATURE) {
            shmrpc__msg_set(err, "method '%s': name or signature too long for the wire", m->name);
            return SHMRPC_EINVAL;
        }
    }
    if (info->n_types > SHMRPC__WIRE_MAX_TYPES) {
        shmrpc__msg_set(err, "service '%s' has %u types; the wire carries at most %u", info->name,
                        info->n_types, SHMRPC__WIRE_MAX_TYPES);
        return SHMRPC_EINVAL;
    }
    for (uint32_t i = 0; i < info->n_types; i++)
        if (strlen(info->types[i]) > SHMRPC__WIRE_MAX_SIGNATURE) {
            shmrpc__msg_set(err, "type %u: description too long for the wire", i);
            return SHMRPC_EINVAL;
        }
    if (h->auth.len > SHMRPC__WIRE_MAX_AUTH) {
        shmrpc__msg_set(err, "auth slot of %zu bytes is above %u", h->auth.len,
                        SHMRPC__WIRE_MAX_AUTH);
        return SHMRPC_EINVAL;
    }
    return 0;
}

int shmrpc__hello_write(shmrpc_buf *out, unsigned kind, const shmrpc__hello *h, shmrpc_buf *err)
{
    (void)kind; /* both bodies have one layout; the kind is in the header */
    int rc = check_writable(h, err);
    if (rc) return rc;
    const shmrpc_service_info *info = &h->info;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, shmrpc_buf_msgpack_write);
    /* A table whose signatures spell their types out (for a peer of revision 5 or less) has none. */
    msgpack_pack_array(&pk, info->n_types ? HELLO_ELEMENTS_6 : HELLO_ELEMENTS);
    msgpack_pack_uint32(&pk, h->proto);
    pack_str(&pk, info->name, strlen(info->name));
    msgpack_pack_uint64(&pk, info->fingerprint);
    msgpack_pack_array(&pk, info->n_methods);
    for (uint32_t i = 0; i < info->n_methods; i++) {
        const shmrpc_method_info *m = &info->methods[i];
        msgpack_pack_array(&pk, METHOD_ELEMENTS);
        msgpack_pack_uint32(&pk, m->id);
        pack_str(&pk, m->name, strlen(m->name));
        msgpack_pack_uint64(&pk, m->fingerprint);
        msgpack_pack_uint32(&pk, (uint32_t)m->encoding);
        pack_str(&pk, m->signature, strlen(m->signature));
    }
    msgpack_pack_uint16(&pk, h->compression);
    msgpack_pack_uint32(&pk, h->threshold);
    msgpack_pack_uint32(&pk, h->max_msg);
    if (h->auth.len) {
        msgpack_pack_bin(&pk, h->auth.len);
        msgpack_pack_bin_body(&pk, h->auth.ptr, h->auth.len);
    } else {
        msgpack_pack_nil(&pk);
    }
    if (info->n_types) {
        msgpack_pack_array(&pk, info->n_types);
        for (uint32_t i = 0; i < info->n_types; i++)
            pack_str(&pk, info->types[i], strlen(info->types[i]));
    }
    return out->err;
}

static int parse_method(shmrpc_mp_reader *r, const char *kname, uint32_t i, shmrpc_arena *a,
                        shmrpc_method_info *m, shmrpc_buf *err)
{
    uint32_t n;
    uint64_t id, fp, enc;
    shmrpc_str sig;
    const char *what = "the entry";
    if (shmrpc_mp_read_array(r, &n)) goto bad;
    if (n < METHOD_ELEMENTS) {
        r->why = "fewer than 5 elements";
        goto bad;
    }
    if ((what = "id", shmrpc_mp_read_uint(r, UINT32_MAX, &id)) ||
        (what = "name", read_name(r, SHMRPC__WIRE_MAX_NAME, a, &m->name)) ||
        (what = "fingerprint", shmrpc_mp_read_uint(r, UINT64_MAX, &fp)) ||
        (what = "encoding", shmrpc_mp_read_uint(r, SHMRPC_ENC_RAW, &enc)) ||
        (what = "signature", shmrpc_mp_read_str(r, &sig)))
        goto bad;
    if (sig.len > SHMRPC__WIRE_MAX_SIGNATURE) {
        r->why = "string too long";
        goto bad;
    }
    if (!(m->signature = shmrpc_arena_strndup(a, sig.ptr, sig.len))) return SHMRPC_ENOMEM;
    m->id = (uint32_t)id;
    m->fingerprint = fp;
    m->encoding = (shmrpc_encoding)enc;
    what = "the entry";
    if (skip_values(r, n - METHOD_ELEMENTS) == 0) return 0;
bad:
    if (r->why && strcmp(r->why, "out of memory") == 0) return SHMRPC_ENOMEM;
    return proto_error(err, "%s body, method %u, %s: %s", kname, i, what,
                       r->why ? r->why : "invalid");
}

static int parse_table(shmrpc_mp_reader *r, const char *kname, shmrpc_arena *a,
                       shmrpc_service_info *info, shmrpc_buf *err)
{
    uint32_t n;
    if (shmrpc_mp_read_array_of(r, METHOD_MIN_BYTES, &n))
        return body_error(err, kname, "element 'methods'", r->why);
    if (n > SHMRPC__WIRE_MAX_METHODS)
        return proto_error(err, "%s body has %u methods, above the maximum of %u", kname, n,
                           SHMRPC__WIRE_MAX_METHODS);
    shmrpc_method_info *methods =
        shmrpc_arena_alloc_items(a, n, sizeof *methods, _Alignof(shmrpc_method_info));
    if (!methods) return SHMRPC_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        int rc = parse_method(r, kname, i, a, &methods[i], err);
        if (rc) return rc;
    }
    info->n_methods = n;
    info->methods = methods;
    return 0;
}

/* Element 8, the table's types: the count checked against the bytes left (a one-byte
 * string at least each) and the wire's maximum before anything is allocated. What the
 * descriptions say is checked where they are read (codec/dynamic_types.c). */
static int parse_types(shmrpc_mp_reader *r, const char *kname, shmrpc_arena *a,
                       shmrpc_service_info *info, shmrpc_buf *err)
{
    uint32_t n;
    if (shmrpc_mp_read_array_of(r, 1, &n)) return body_error(err, kname, "element 'types'", r->why);
    if (n > SHMRPC__WIRE_MAX_TYPES)
        return proto_error(err, "%s body has %u types, above the maximum of %u", kname, n,
                           SHMRPC__WIRE_MAX_TYPES);
    const char **types = shmrpc_arena_alloc_items(a, n ? n : 1, sizeof *types, _Alignof(char *));
    if (!types) return SHMRPC_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        shmrpc_str t;
        if (shmrpc_mp_read_str(r, &t))
            return proto_error(err, "%s body, type %u: %s", kname, i, r->why ? r->why : "invalid");
        if (t.len > SHMRPC__WIRE_MAX_SIGNATURE || memchr(t.ptr, '\0', t.len))
            return proto_error(err, "%s body, type %u: %s", kname, i,
                               t.len > SHMRPC__WIRE_MAX_SIGNATURE ? "string too long"
                                                                  : "string holds a NUL byte");
        if (!(types[i] = shmrpc_arena_strndup(a, t.ptr, t.len))) return SHMRPC_ENOMEM;
    }
    info->n_types = n;
    info->types = n ? types : NULL;
    return 0;
}

/* The table must be one that shmrpc__method_map can walk: sorted, ids = indexes. */
static int check_table(const shmrpc_service_info *info, const char *kname, shmrpc_buf *err)
{
    shmrpc_buf why;
    shmrpc_buf_init(&why);
    int rc = shmrpc__info_check(info, &why);
    if (rc == 0) rc = shmrpc__types_check(info, &why); /* a hostile table goes no further */
    if (rc == SHMRPC_ENOMEM) {
        shmrpc_buf_destroy(&why);
        return rc;
    }
    if (rc) rc = proto_error(err, "%s body: %s", kname, shmrpc__msg_get(&why));
    shmrpc_buf_destroy(&why);
    return rc;
}

int shmrpc__hello_parse(shmrpc_bytes body, unsigned kind, shmrpc_arena *a, shmrpc__hello *h,
                        shmrpc_buf *err)
{
    const char *kname = shmrpc__frame_kind_name(kind);
    if (kind != SHMRPC__KIND_HELLO && kind != SHMRPC__KIND_HELLO_ACK) {
        shmrpc__msg_set(err, "%s is not a handshake frame", kname);
        return SHMRPC_EINVAL;
    }
    memset(h, 0, sizeof *h);
    shmrpc_service_info *info = &h->info;
    *info =
        (shmrpc_service_info){.magic = SHMRPC_SERVICE_MAGIC, .version = SHMRPC_DESCRIPTOR_VERSION};
    shmrpc_mp_reader r;
    shmrpc_mp_reader_init(&r, body.ptr, body.len);
    uint32_t n;
    uint64_t proto, fp, comp, threshold, max_msg;
    if (shmrpc_mp_read_array(&r, &n)) return body_error(err, kname, "the body", r.why);
    if (n < HELLO_ELEMENTS)
        return proto_error(err, "%s body has %u elements, expected at least %u", kname, n,
                           HELLO_ELEMENTS);
    const char *what;
    if ((what = "element 'proto'", shmrpc_mp_read_uint(&r, UINT32_MAX, &proto)) ||
        (what = "element 'service'", read_name(&r, SHMRPC__WIRE_MAX_NAME, a, &info->name)) ||
        (what = "element 'fingerprint'", shmrpc_mp_read_uint(&r, UINT64_MAX, &fp)))
        return r.why && !strcmp(r.why, "out of memory") ? SHMRPC_ENOMEM
                                                        : body_error(err, kname, what, r.why);
    int rc = parse_table(&r, kname, a, info, err);
    if (rc) return rc;
    shmrpc_bytes auth = {NULL, 0};
    if ((what = "element 'compression'", shmrpc_mp_read_uint(&r, UINT16_MAX, &comp)) ||
        (what = "element 'threshold'", shmrpc_mp_read_uint(&r, UINT32_MAX, &threshold)) ||
        (what = "element 'max_msg'", shmrpc_mp_read_uint(&r, UINT32_MAX, &max_msg)) ||
        (what = "element 'auth'", (rc = shmrpc_mp_try_nil(&r)) < 0) ||
        (rc == 0 && shmrpc_mp_read_bin(&r, &auth)))
        return body_error(err, kname, what, r.why);
    if (n >= HELLO_ELEMENTS_6 && (rc = parse_types(&r, kname, a, info, err)) != 0) return rc;
    if ((what = "the body",
         skip_values(&r, n - (n >= HELLO_ELEMENTS_6 ? HELLO_ELEMENTS_6 : HELLO_ELEMENTS))) ||
        shmrpc_mp_finish(&r))
        return body_error(err, kname, what, r.why);
    if (proto == 0) return proto_error(err, "%s body has protocol revision 0", kname);
    if (max_msg == 0) return proto_error(err, "%s body has a maximum message of 0", kname);
    if (auth.len > SHMRPC__WIRE_MAX_AUTH)
        return proto_error(err, "%s body has an auth slot of %zu bytes, above %u", kname, auth.len,
                           SHMRPC__WIRE_MAX_AUTH);
    if (kind == SHMRPC__KIND_HELLO) {
        comp &= SHMRPC__FLAG_COMPRESSION; /* offers of algorithms we do not know */
    } else if (comp != 0 && comp != SHMRPC__FLAG_SNAPPY && comp != SHMRPC__FLAG_ZLIB) {
        return proto_error(err, "%s body chooses compression 0x%04x, not one known algorithm",
                           kname, (unsigned)comp);
    }
    info->svc_name = info->name;
    info->fingerprint = fp;
    rc = check_table(info, kname, err);
    if (rc) return rc;
    h->proto = (uint32_t)proto;
    h->compression = (uint16_t)comp;
    h->threshold = (uint32_t)threshold;
    h->max_msg = (uint32_t)max_msg;
    h->auth = auth;
    return 0;
}

int shmrpc__hello_answer(const shmrpc__hello *hello, const shmrpc_service_info *server,
                         uint16_t allowed, uint32_t threshold, uint32_t max_msg, shmrpc_arena *a,
                         shmrpc__hello *ack, shmrpc_buf *err)
{
    if (hello->proto == 0) {
        shmrpc__msg_set(err, "the client speaks no protocol revision");
        return SHMRPC_EVERSION;
    }
    uint32_t n = hello->info.n_methods;
    uint32_t *map = shmrpc_arena_alloc_items(a, n, sizeof *map, _Alignof(uint32_t));
    if (!map) return SHMRPC_ENOMEM;
    int rc = shmrpc__method_map(&hello->info, server, map, err, NULL);
    if (rc) return rc;
    unsigned offered = hello->compression & allowed;
    memset(ack, 0, sizeof *ack);
    ack->proto = hello->proto < SHMRPC__WIRE_PROTO ? hello->proto : SHMRPC__WIRE_PROTO;
    ack->info = *server;
    ack->compression = offered & SHMRPC__FLAG_SNAPPY ? SHMRPC__FLAG_SNAPPY
                       : offered & SHMRPC__FLAG_ZLIB ? SHMRPC__FLAG_ZLIB
                                                     : 0;
    ack->threshold = hello->threshold > threshold ? hello->threshold : threshold;
    ack->max_msg = max_msg;
    return 0;
}

int shmrpc__hello_accept(const shmrpc__hello *hello, const shmrpc__hello *ack, shmrpc_buf *err)
{
    if (ack->proto == 0 || ack->proto > hello->proto)
        return proto_error(err, "the server chose protocol revision %u; the client offered 1 to %u",
                           ack->proto, hello->proto);
    if (ack->compression & ~hello->compression)
        return proto_error(err, "the server chose %s compression, which the client did not offer",
                           comp_name(ack->compression));
    return 0;
}

/* --- error bodies --------------------------------------------------------------------- */

int shmrpc__error_write(shmrpc_buf *out, int status, shmrpc_str msg)
{
    if (status >= 0) return SHMRPC_EINVAL;
    size_t len = msg.len;
    if (len > SHMRPC__WIRE_MAX_ERRMSG) {
        len = SHMRPC__WIRE_MAX_ERRMSG;
        /* Cut before a UTF-8 continuation byte, not inside a character. */
        while (len > 0 && ((uint8_t)msg.ptr[len] & 0xc0) == 0x80)
            len--;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, shmrpc_buf_msgpack_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int32(&pk, status);
    pack_str(&pk, msg.ptr, len);
    return out->err;
}

int shmrpc__error_parse(shmrpc_bytes body, int *status, shmrpc_str *msg, shmrpc_buf *err)
{
    shmrpc_mp_reader r;
    shmrpc_mp_reader_init(&r, body.ptr, body.len);
    uint32_t n;
    int64_t st;
    shmrpc_str m;
    const char *what;
    if ((what = "the body", shmrpc_mp_read_array(&r, &n))) goto bad;
    if (n < 2) return proto_error(err, "ERROR body has %u elements, expected at least 2", n);
    if ((what = "element 'status'", shmrpc_mp_read_int(&r, INT32_MIN, -1, &st)) ||
        (what = "element 'message'", shmrpc_mp_read_str(&r, &m)))
        goto bad;
    if (m.len > SHMRPC__WIRE_MAX_ERRMSG) {
        r.why = "string too long";
        goto bad;
    }
    if ((what = "the body", skip_values(&r, n - 2)) || shmrpc_mp_finish(&r)) goto bad;
    *status = (int)st;
    *msg = m;
    return 0;
bad:
    return body_error(err, "ERROR", what, r.why);
}
