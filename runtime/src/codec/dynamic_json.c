/* SPDX-License-Identifier: MIT */
/* The dynamic codec's conversions (shmrpc/dynamic.h): JSON arguments checked against a
 * parsed signature and written as msgpack, as JSON text or as raw bytes, and results read
 * back to JSON text, with messages that name the place of a failure (their pieces are
 * dynamic_values.c's and dynamic_any.c's, dyn_json.h). */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>
#include <sodium.h>

#include "codec/dyn_json.h"

/* --- JSON -> msgpack ------------------------------------------------------------------------ */

static int to_mp(cx *c, const shmrpc_dyn_type *t, const json_t *v, msgpack_packer *pk);

/* What a JSON value is checked for before its type's own checks, to msgpack or to JSON
 * text alike: how deep it nests, and an integer above INT64_MAX where t takes none. 0, or
 * -1 after a message. (inline, as int_from_mp: each runs once a value, and a call costs
 * a few percent there.) */
static inline int check_value(cx *c, const shmrpc_dyn_type *t, const json_t *v)
{
    if (c->depth > MAX_DEPTH) return shmrpc__dj_fail(c, "nested more than %u deep", MAX_DEPTH);
    if (!shmrpc__dj_takes_big(t) && shmrpc__dj_big_digits(c, v) != NULL)
        return shmrpc__dj_mismatch(c, t, v);
    return 0;
}

/* The index of the field named name among n, or n when none is. */
static size_t field_index(const shmrpc_dyn_field *fields, size_t n, const char *name)
{
    size_t i = 0;
    while (i < n && strcmp(fields[i].name, name) != 0)
        i++;
    return i;
}

static int struct_to(cx *c, const shmrpc_dyn_type *t, const json_t *v, msgpack_packer *pk,
                     shmrpc_buf *jb);

/* An element of a list or a value of a map (arg: the list's or map's type), for the walks
 * of dyn_json.h. */
static int elem_to_mp(cx *c, const void *arg, const json_t *v, msgpack_packer *pk)
{
    return to_mp(c, ((const shmrpc_dyn_type *)arg)->elem, v, pk);
}

/* A key of a map (arg: the map's type): a string as it is, an integer or an enum read from
 * its text. */
static int key_to_mp(cx *c, const void *arg, const char *key, msgpack_packer *pk)
{
    const shmrpc_dyn_type *k = ((const shmrpc_dyn_type *)arg)->key;
    int64_t sv = 0;
    uint64_t uv = 0;
    if (k->kind == SHMRPC_DYN_STRING) {
        msgpack_pack_str_with_body(pk, key, strlen(key));
    } else {
        if (shmrpc__dj_json_key(c, k, key, &sv, &uv) != 0) return -1;
        if (k->kind == SHMRPC_DYN_U64)
            msgpack_pack_uint64(pk, uv);
        else
            msgpack_pack_int64(pk, sv);
    }
    return 0;
}

static int to_mp(cx *c, const shmrpc_dyn_type *t, const json_t *v, msgpack_packer *pk)
{
    if (check_value(c, t, v) != 0) return -1;
    int64_t sv = 0;
    uint64_t uv = 0;
    switch (t->kind) {
    case SHMRPC_DYN_VOID: /* a result only: what a void method answers, as in to_json */
        if (!json_is_null(v)) return shmrpc__dj_mismatch(c, t, v);
        return msgpack_pack_nil(pk);
    case SHMRPC_DYN_BOOL:
        if (!json_is_boolean(v)) return shmrpc__dj_mismatch(c, t, v);
        return json_is_true(v) ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    case SHMRPC_DYN_F32:
    case SHMRPC_DYN_F64: {
        double d;
        if (shmrpc__dj_number_value(c, v, &d) != 0) return shmrpc__dj_mismatch(c, t, v);
        if (t->kind == SHMRPC_DYN_F64) return msgpack_pack_double(pk, d);
        if (d > FLT_MAX || d < -FLT_MAX) return shmrpc__dj_fail(c, "%g is out of range for f32", d);
        return msgpack_pack_float(pk, (float)d);
    }
    case SHMRPC_DYN_STRING:
        if (!json_is_string(v)) return shmrpc__dj_mismatch(c, t, v);
        return msgpack_pack_str_with_body(pk, json_string_value(v), json_string_length(v));
    case SHMRPC_DYN_BYTES: {
        uint8_t *p;
        size_t n;
        if (shmrpc__dj_json_base64(c, t, v, &p, &n) != 0) return -1;
        msgpack_pack_bin_with_body(pk, p, n);
        free(p);
        return 0;
    }
    case SHMRPC_DYN_OPT:
        return json_is_null(v) ? msgpack_pack_nil(pk) : to_mp(c, t->elem, v, pk);
    case SHMRPC_DYN_ENUM: {
        const shmrpc_dyn_enumval *e;
        if (shmrpc__dj_json_enum(c, t, v, &e) != 0) return -1;
        return msgpack_pack_int64(pk, e->value);
    }
    case SHMRPC_DYN_LIST:
        if (!json_is_array(v)) return shmrpc__dj_mismatch(c, t, v);
        return shmrpc__dj_array_to_mp(c, v, pk, elem_to_mp, t);
    case SHMRPC_DYN_MAP:
        if (!json_is_object(v)) return shmrpc__dj_mismatch(c, t, v);
        return shmrpc__dj_object_to_mp(c, v, pk, key_to_mp, elem_to_mp, t);
    case SHMRPC_DYN_STRUCT:
        return struct_to(c, t, v, pk, NULL);
    case SHMRPC_DYN_ANY: {
        /* Its depth counts from the any, as its decoder counts it. */
        unsigned depth = c->depth;
        c->depth = 0;
        int rc = shmrpc__dj_json_to_any(c, v, pk, true, false);
        c->depth = depth;
        return rc;
    }
    default:
        if (shmrpc__dj_json_int(c, t, v, &sv, &uv) != 0) return -1;
        return shmrpc_dyn_is_signed(t->kind) ? msgpack_pack_int64(pk, sv)
                                             : msgpack_pack_uint64(pk, uv);
    }
}

/* --- JSON -> checked JSON text (@json arguments and results) ------------------------------- */

static int to_json(cx *c, const shmrpc_dyn_type *t, const json_t *v, shmrpc_buf *b)
{
    if (check_value(c, t, v) != 0) return -1;
    int64_t sv = 0;
    uint64_t uv = 0;
    switch (t->kind) {
    case SHMRPC_DYN_VOID:
        if (!json_is_null(v)) return shmrpc__dj_mismatch(c, t, v);
        shmrpc__dj_out_str(b, "null");
        return 0;
    case SHMRPC_DYN_BOOL:
        if (!json_is_boolean(v)) return shmrpc__dj_mismatch(c, t, v);
        shmrpc__dj_out_str(b, json_is_true(v) ? "true" : "false");
        return 0;
    case SHMRPC_DYN_F32:
    case SHMRPC_DYN_F64: {
        double d;
        if (shmrpc__dj_number_value(c, v, &d) != 0) return shmrpc__dj_mismatch(c, t, v);
        if (t->kind == SHMRPC_DYN_F32 && fabs(d) > FLT_MAX)
            return shmrpc__dj_fail(c, "%g is out of range for f32", d);
        /* Generated code writes an f32 as the double it widens to. */
        if (c->wire)
            return shmrpc__dj_out_jansson(c, b,
                                          json_real(t->kind == SHMRPC_DYN_F32 ? (float)d : d));
        return shmrpc__dj_out_real(c, b, d, t->kind == SHMRPC_DYN_F32);
    }
    case SHMRPC_DYN_STRING:
        if (!json_is_string(v)) return shmrpc__dj_mismatch(c, t, v);
        return shmrpc__dj_out_string(c, b, json_string_value(v), json_string_length(v));
    case SHMRPC_DYN_BYTES: {
        uint8_t *p;
        size_t n;
        if (shmrpc__dj_json_base64(c, t, v, &p, &n) != 0) return -1;
        free(p);
        shmrpc__dj_out_json_str(b, json_string_value(v), json_string_length(v));
        return 0;
    }
    case SHMRPC_DYN_OPT:
        if (json_is_null(v)) {
            shmrpc__dj_out_str(b, "null");
            return 0;
        }
        return to_json(c, t->elem, v, b);
    case SHMRPC_DYN_ENUM: {
        const shmrpc_dyn_enumval *e;
        if (shmrpc__dj_json_enum(c, t, v, &e) != 0) return -1;
        shmrpc__dj_out_json_str(b, e->name, strlen(e->name));
        return 0;
    }
    case SHMRPC_DYN_LIST: {
        if (!json_is_array(v)) return shmrpc__dj_mismatch(c, t, v);
        shmrpc__dj_out_str(b, "[");
        c->depth++;
        for (size_t i = 0; i < json_array_size(v); i++) {
            size_t old = shmrpc__dj_path_push(c, "[%zu]", i);
            if (i) shmrpc__dj_out_str(b, ",");
            if (to_json(c, t->elem, json_array_get(v, i), b) != 0) return -1;
            shmrpc__dj_path_pop(c, old);
        }
        c->depth--;
        shmrpc__dj_out_str(b, "]");
        return 0;
    }
    case SHMRPC_DYN_MAP: {
        if (!json_is_object(v)) return shmrpc__dj_mismatch(c, t, v);
        shmrpc__dj_out_str(b, "{");
        const char *key;
        json_t *val;
        bool first = true;
        c->depth++;
        json_object_foreach((json_t *)v, key, val)
        {
            size_t old = shmrpc__dj_path_push(c, "[\"%.40s\"]", key);
            /* Keys are strings: a u64 key above INT64_MAX has a JSON form, as a value has not. */
            if (t->key->kind != SHMRPC_DYN_STRING &&
                shmrpc__dj_json_key(c, t->key, key, &sv, &uv) != 0)
                return -1;
            if (!first) shmrpc__dj_out_str(b, ",");
            first = false;
            if (shmrpc__dj_out_string(c, b, key, strlen(key)) != 0) return -1;
            shmrpc__dj_out_str(b, ":");
            if (to_json(c, t->elem, val, b) != 0) return -1;
            shmrpc__dj_path_pop(c, old);
        }
        c->depth--;
        shmrpc__dj_out_str(b, "}");
        return 0;
    }
    case SHMRPC_DYN_STRUCT:
        return struct_to(c, t, v, NULL, b);
    case SHMRPC_DYN_ANY:
        /* To the wire the codec's forms are read and refused there; from it, plain JSON is
         * printed with them. */
        return shmrpc__dj_any_json_to_json(c, v, c->wire, b);
    default:
        if (shmrpc__dj_json_int(c, t, v, &sv, &uv) != 0) return -1;
        if (t->kind == SHMRPC_DYN_U64 && uv > INT64_MAX)
            return shmrpc__dj_fail(
                c, "%" PRIu64 " has no JSON form in a @json method (integers travel as int64)", uv);
        if (shmrpc_dyn_is_signed(t->kind))
            shmrpc__dj_out_i64(b, sv);
        else
            shmrpc__dj_out_u64(b, uv);
        return 0;
    }
}

/* A struct from a JSON object by field name, to msgpack (pk) or to JSON text (jb): unknown
 * members are refused (but skipped in a body read from a peer), absent optional fields are
 * null. */
static int struct_to(cx *c, const shmrpc_dyn_type *t, const json_t *v, msgpack_packer *pk,
                     shmrpc_buf *jb)
{
    if (!json_is_object(v)) return shmrpc__dj_mismatch(c, t, v);
    const char *key;
    json_t *val;
    /* A member a user wrote that the struct lacks is a mistake; one in a @json body a peer
     * sent (!c->wire: read from the wire) is a newer build's, and skipped (docs/svc-language.md,
     * "Compatible evolution"). */
    json_object_foreach((json_t *)v, key, val)
    {
        if (field_index(t->fields, t->n, key) == t->n && (c->wire || pk))
            return shmrpc__dj_fail(c, "struct %s has no field '%.40s'", t->name, key);
    }
    if (pk) msgpack_pack_array(pk, t->n);
    if (jb) shmrpc__dj_out_str(jb, "{");
    c->depth++;
    for (size_t i = 0; i < t->n; i++) {
        const shmrpc_dyn_field *f = &t->fields[i];
        json_t *fv = json_object_get(v, f->name);
        if (fv == NULL && f->type->kind != SHMRPC_DYN_OPT)
            return shmrpc__dj_fail(c, "missing field '%s'", f->name);
        json_t *null = json_null();
        size_t old = shmrpc__dj_path_push(c, ".%s", f->name);
        if (jb) {
            if (i) shmrpc__dj_out_str(jb, ",");
            shmrpc__dj_out_json_str(jb, f->name, strlen(f->name));
            shmrpc__dj_out_str(jb, ":");
        }
        int rc =
            pk ? to_mp(c, f->type, fv ? fv : null, pk) : to_json(c, f->type, fv ? fv : null, jb);
        if (rc != 0) return -1;
        shmrpc__dj_path_pop(c, old);
    }
    c->depth--;
    if (jb) shmrpc__dj_out_str(jb, "}");
    return 0;
}

/* --- msgpack -> JSON text ------------------------------------------------------------------- */

static int mp_fail(cx *c, const shmrpc_mp_reader *r)
{
    return shmrpc__dj_fail(c, "%s", r->why ? r->why : "invalid");
}

/* An enum's value read and written as its name, a JSON string; what: "" for a value, "key "
 * for a map's key, in the message. The enum's value, or NULL after a message. */
static const shmrpc_dyn_enumval *enum_from_mp(cx *c, const shmrpc_dyn_type *t, shmrpc_mp_reader *r,
                                              shmrpc_buf *b, const char *what)
{
    int64_t v;
    if (shmrpc_mp_read_int(r, INT32_MIN, INT32_MAX, &v) != 0) {
        mp_fail(c, r);
        return NULL;
    }
    const shmrpc_dyn_enumval *e = shmrpc__dj_enum_by_value(t, v);
    if (e == NULL) {
        shmrpc__dj_fail(c, "%s%" PRId64 " is not a value of enum %s", what, v, t->name);
        return NULL;
    }
    shmrpc__dj_out_json_str(b, e->name, strlen(e->name));
    return e;
}

/* An integer of t's kind read within its range, as decimal text in s (cap bytes; 24 hold
 * any), in quotes when quoted (a map's key: a JSON object's keys are strings). 0, or -1
 * after a message. */
static inline int int_from_mp(cx *c, const shmrpc_dyn_type *t, shmrpc_mp_reader *r, bool quoted,
                              char *s, size_t cap)
{
    if (shmrpc_dyn_is_signed(t->kind)) {
        int64_t v;
        if (shmrpc_mp_read_int(r, shmrpc__dyn_int_min(t->kind),
                               (int64_t)shmrpc__dyn_int_max(t->kind), &v) != 0)
            return mp_fail(c, r);
        snprintf(s, cap, quoted ? "\"%" PRId64 "\"" : "%" PRId64, v);
    } else {
        uint64_t v;
        if (shmrpc_mp_read_uint(r, shmrpc__dyn_int_max(t->kind), &v) != 0) return mp_fail(c, r);
        snprintf(s, cap, quoted ? "\"%" PRIu64 "\"" : "%" PRIu64, v);
    }
    return 0;
}

static int from_mp(cx *c, const shmrpc_dyn_type *t, shmrpc_mp_reader *r, shmrpc_buf *b)
{
    if (c->depth > MAX_DEPTH) return shmrpc__dj_fail(c, "nested more than %u deep", MAX_DEPTH);
    switch (t->kind) {
    case SHMRPC_DYN_VOID:
        if (shmrpc_mp_read_nil(r) != 0) return mp_fail(c, r);
        shmrpc__dj_out_str(b, "null");
        return 0;
    case SHMRPC_DYN_BOOL: {
        bool v;
        if (shmrpc_mp_read_bool(r, &v) != 0) return mp_fail(c, r);
        shmrpc__dj_out_str(b, v ? "true" : "false");
        return 0;
    }
    case SHMRPC_DYN_F32: {
        float f;
        if (shmrpc_mp_read_f32(r, &f) != 0) return mp_fail(c, r);
        return shmrpc__dj_out_real(c, b, f, true);
    }
    case SHMRPC_DYN_F64: {
        double d;
        if (shmrpc_mp_read_f64(r, &d) != 0) return mp_fail(c, r);
        return shmrpc__dj_out_real(c, b, d, false);
    }
    case SHMRPC_DYN_STRING: {
        shmrpc_str s;
        if (shmrpc_mp_read_str(r, &s) != 0) return mp_fail(c, r);
        if (!shmrpc__utf8_valid((const uint8_t *)s.ptr, s.len))
            return shmrpc__dj_fail(c, "string is not UTF-8");
        shmrpc__dj_out_json_str(b, s.ptr, s.len);
        return 0;
    }
    case SHMRPC_DYN_BYTES: {
        shmrpc_bytes v;
        if (shmrpc_mp_read_bin(r, &v) != 0) return mp_fail(c, r);
        shmrpc__dj_out_base64(c, b, v.ptr, v.len);
        return 0;
    }
    case SHMRPC_DYN_OPT: {
        int nil = shmrpc_mp_try_nil(r);
        if (nil < 0) return mp_fail(c, r);
        if (nil) {
            shmrpc__dj_out_str(b, "null");
            return 0;
        }
        return from_mp(c, t->elem, r, b);
    }
    case SHMRPC_DYN_ENUM:
        return enum_from_mp(c, t, r, b, "") ? 0 : -1;
    case SHMRPC_DYN_LIST: {
        uint32_t n;
        if (shmrpc_mp_read_array(r, &n) != 0) return mp_fail(c, r);
        shmrpc__dj_out_str(b, "[");
        c->depth++;
        for (uint32_t i = 0; i < n; i++) {
            size_t old = shmrpc__dj_path_push(c, "[%" PRIu32 "]", i);
            if (i) shmrpc__dj_out_str(b, ",");
            if (from_mp(c, t->elem, r, b) != 0) return -1;
            shmrpc__dj_path_pop(c, old);
        }
        c->depth--;
        shmrpc__dj_out_str(b, "]");
        return 0;
    }
    case SHMRPC_DYN_MAP: {
        uint32_t n;
        if (shmrpc_mp_read_map(r, &n) != 0) return mp_fail(c, r);
        shmrpc__dj_out_str(b, "{");
        c->depth++;
        for (uint32_t i = 0; i < n; i++) {
            if (i) shmrpc__dj_out_str(b, ",");
            char key[64];
            const shmrpc_dyn_type *k = t->key;
            if (k->kind == SHMRPC_DYN_STRING) {
                shmrpc_str s;
                if (shmrpc_mp_read_str(r, &s) != 0) return mp_fail(c, r);
                if (!shmrpc__utf8_valid((const uint8_t *)s.ptr, s.len))
                    return shmrpc__dj_fail(c, "a key is not UTF-8");
                /* Valid JSON, but jansson keeps keys as C strings: encode_args and
                 * encode_result, a @json peer and shmrpcctl could not read it back. */
                if (memchr(s.ptr, 0, s.len) != NULL)
                    return shmrpc__dj_fail(c, "a key holds a NUL byte, which jansson refuses in an "
                                              "object key");
                shmrpc__dj_out_json_str(b, s.ptr, s.len);
                snprintf(key, sizeof key, "\"%.*s\"", s.len > 40 ? 40 : (int)s.len, s.ptr);
            } else if (k->kind == SHMRPC_DYN_ENUM) {
                const shmrpc_dyn_enumval *e = enum_from_mp(c, k, r, b, "key ");
                if (e == NULL) return -1;
                snprintf(key, sizeof key, "\"%.40s\"", e->name);
            } else {
                if (int_from_mp(c, k, r, true, key, sizeof key) != 0) return -1;
                shmrpc__dj_out_str(b, key);
            }
            shmrpc__dj_out_str(b, ":");
            size_t old = shmrpc__dj_path_push(c, "[%s]", key);
            if (from_mp(c, t->elem, r, b) != 0) return -1;
            shmrpc__dj_path_pop(c, old);
        }
        c->depth--;
        shmrpc__dj_out_str(b, "}");
        return 0;
    }
    case SHMRPC_DYN_STRUCT: {
        uint32_t n;
        if (shmrpc_mp_read_array(r, &n) != 0) return mp_fail(c, r);
        /* An older peer's struct may lack trailing optional fields (null), a newer one's
         * have more (skipped): docs/svc-language.md, "Compatible evolution". */
        size_t req = t->n;
        while (req > 0 && t->fields[req - 1].type->kind == SHMRPC_DYN_OPT)
            req--;
        if (n < req)
            return shmrpc__dj_fail(c, "struct %s: expected %s%zu fields, got %" PRIu32, t->name,
                                   req < t->n ? "at least " : "", req, n);
        shmrpc__dj_out_str(b, "{");
        c->depth++;
        for (size_t i = 0; i < t->n; i++) {
            const shmrpc_dyn_field *f = &t->fields[i];
            if (i) shmrpc__dj_out_str(b, ",");
            shmrpc__dj_out_json_str(b, f->name, strlen(f->name));
            shmrpc__dj_out_str(b, ":");
            size_t old = shmrpc__dj_path_push(c, ".%s", f->name);
            if (i >= n)
                shmrpc__dj_out_str(b, "null");
            else if (from_mp(c, f->type, r, b) != 0)
                return -1;
            shmrpc__dj_path_pop(c, old);
        }
        if (n > t->n && shmrpc_mp_skip(r, n - (uint32_t)t->n) != 0) return mp_fail(c, r);
        c->depth--;
        shmrpc__dj_out_str(b, "}");
        return 0;
    }
    case SHMRPC_DYN_ANY: {
        shmrpc_any a;
        if (shmrpc_mp_read_any(r, &a) != 0) return mp_fail(c, r);
        return shmrpc__dj_any_out(c, a, b);
    }
    default: {
        char s[24];
        if (int_from_mp(c, t, r, false, s, sizeof s) != 0) return -1;
        shmrpc__dj_out_str(b, s);
        return 0;
    }
    }
}

/* --- arguments and results ------------------------------------------------------------------ */

/* Whether c may end a number or a word (so that a digit after it does not start one). */
static bool in_token(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
           c == '-' || c == '+';
}

/* The n bytes of JSON p with each bare integer above INT64_MAX in a value's place made a
 * string starting with BIG (see there), or NULL when there is none, or a string of the
 * text starts with a NUL (then BIG would not be unambiguous), or it nests too deep to follow (it
 * was checked against MAX_DEPTH already): the text is then read as it is. NULL with *nomem set when
 * memory ran out. A token in a key's place is left for jansson to refuse. */
static char *mark_bigs(const char *p, size_t n, size_t *out_n, bool *nomem)
{
    bool in_object[MAX_DEPTH + 2];
    unsigned depth = 0;
    bool in_str = false, marked = false;
    char prev = '\0'; /* the last character outside strings and white space */
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (in_str) {
            if (ch == '\\') {
                shmrpc_buf_append(&b, p + i, i + 1 < n ? 2 : 1);
                i++;
                continue;
            }
            if (ch == '"') in_str = false;
            shmrpc_buf_append(&b, &ch, 1);
            continue;
        }
        bool value_place = prev == '\0' || prev == ':' || prev == '[' ||
                           (prev == ',' && depth > 0 && !in_object[depth - 1]);
        if (ch >= '1' && ch <= '9' && value_place && (i == 0 || !in_token(p[i - 1]))) {
            size_t j = i;
            while (j < n && p[j] >= '0' && p[j] <= '9')
                j++;
            size_t len = j - i;
            bool big = (len > 19 || (len == 19 && memcmp(p + i, "9223372036854775807", 19) > 0)) &&
                       (j == n || !in_token(p[j]));
            if (big) shmrpc_buf_append(&b, "\"\\u0000u64:", 11);
            shmrpc_buf_append(&b, p + i, len);
            if (big) shmrpc_buf_append(&b, "\"", 1);
            marked |= big;
            prev = p[j - 1];
            i = j - 1;
            continue;
        }
        if (ch == '"') {
            /* Only a string written starting "\u0000" starts with a NUL (a raw one is not
             * JSON), so only such a string could be taken for BIG. */
            if (i + 6 < n && memcmp(p + i + 1, "\\u0000", 6) == 0) goto none;
            in_str = true;
        }
        if (ch == '{' || ch == '[') {
            if (depth == MAX_DEPTH + 2) goto none;
            in_object[depth++] = ch == '{';
        } else if ((ch == '}' || ch == ']') && depth > 0) {
            depth--;
        }
        if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') prev = ch;
        shmrpc_buf_append(&b, &ch, 1);
    }
    *nomem = b.err != 0;
    if (!marked || b.err != 0) goto none;
    *out_n = b.len;
    return (char *)b.data;
none:
    shmrpc_buf_destroy(&b);
    return NULL;
}

/* Parses n bytes of JSON; NULL with a message naming the line and column, or the depth
 * (checked first: jansson recurses once a level), and c's status when memory ran out.
 * With c->big asked for, integers above INT64_MAX are marked (mark_bigs) and c->big says
 * whether any was. */
static json_t *parse_json(cx *c, const char *p, size_t n, const char *what)
{
    if (shmrpc_json_check_depth(p, n, MAX_DEPTH) != 0) {
        snprintf(c->err, c->cap, "%s: JSON nested more than %u deep", what, MAX_DEPTH);
        return NULL;
    }
    size_t mn = 0;
    bool out_of_memory = false;
    char *marked = c->big ? mark_bigs(p, n, &mn, &out_of_memory) : NULL;
    c->big = marked != NULL;
    json_error_t je;
    const char *text = marked ? marked : p;
    size_t len = marked ? mn : n;
    const size_t flags = JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL;
    json_t *v = out_of_memory ? NULL : json_loadb(text, len, flags, &je);
    /* jansson 2.14 says so for some of its allocations only: its lexer drops a character
     * when its buffer cannot grow (jansson issue #362), which nobody after it can tell. */
    out_of_memory |= v == NULL && json_error_code(&je) == json_error_out_of_memory;
    free(marked);
    if (out_of_memory) {
        c->status = SHMRPC_ENOMEM;
        snprintf(c->err, c->cap, "%s: out of memory", what);
    } else if (v == NULL) {
        snprintf(c->err, c->cap, "%s: bad JSON at line %d, column %d: %s", what, je.line, je.column,
                 je.text);
    }
    return v;
}

/* The arguments in parameter order: args[i] is a borrowed value or NULL when not given. */
static int order_args(const shmrpc_dyn_sig *s, const json_t *in, const json_t **args, cx *c)
{
    char names[256] = "";
    for (size_t i = 0; i < s->n_params && strlen(names) < sizeof names - 40; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                 s->params[i].name);
    if (json_is_array(in)) {
        size_t n = json_array_size(in);
        if (n > s->n_params)
            return shmrpc__dj_fail(c, "%zu given, but %s takes %zu (%s)", n, s->method, s->n_params,
                                   names);
        for (size_t i = 0; i < n; i++)
            args[i] = json_array_get(in, i);
    } else if (json_is_object(in)) {
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)in, key, val)
        {
            size_t i = field_index(s->params, s->n_params, key);
            if (i == s->n_params)
                return shmrpc__dj_fail(c, "%s has no parameter '%.40s' (it takes: %s)", s->method,
                                       key, s->n_params ? names : "nothing");
            args[i] = val;
        }
    } else {
        char g[64];
        return shmrpc__dj_fail(
            c, "expected a JSON array of the arguments in order or an object by name, got %s",
            shmrpc__dj_shown(c, in, g, sizeof g));
    }
    for (size_t i = 0; i < s->n_params; i++)
        if (args[i] == NULL && s->params[i].type->kind != SHMRPC_DYN_OPT)
            return shmrpc__dj_fail(c, "missing argument '%s' (%s takes: %s)", s->params[i].name,
                                   s->method, names);
    return 0;
}

static int raw_arg(cx *c, const json_t *v, shmrpc_buf *req)
{
    if (json_is_string(v) && shmrpc__dj_big_digits(c, v) == NULL)
        return shmrpc_buf_append(req, json_string_value(v), json_string_length(v));
    const json_t *b64v = json_object_get(v, "base64");
    if (json_is_object(v) && json_object_size(v) == 1 && json_is_string(b64v)) {
        static const shmrpc_dyn_type bytes = {.kind = SHMRPC_DYN_BYTES};
        uint8_t *p;
        size_t n;
        if (shmrpc__dj_json_base64(c, &bytes, b64v, &p, &n) != 0) return -1;
        int rc = shmrpc_buf_append(req, p, n);
        free(p);
        return rc;
    }
    char g[64];
    return shmrpc__dj_fail(c,
                           "expected a string (its UTF-8 bytes) or {\"base64\": \"...\"}, got %s",
                           shmrpc__dj_shown(c, v, g, sizeof g));
}

/* The open of a method whose parameter streams sends none: its items come one by one
 * (shmrpc_dyn_encode_item). in must be [] or {}; the request is an empty one. */
static int encode_no_args(const shmrpc_dyn_sig *s, cx *c, const json_t *in, shmrpc_buf *req)
{
    if ((!json_is_array(in) || json_array_size(in) != 0) &&
        (!json_is_object(in) || json_object_size(in) != 0))
        return shmrpc__dj_fail(c,
                               "%s's parameter '%s' streams: its open takes no arguments (its "
                               "items are sent one by one)",
                               s->method, s->params[0].name);
    msgpack_packer pk;
    msgpack_packer_init(&pk, req, shmrpc_buf_msgpack_write);
    if (s->encoding == SHMRPC_ENC_MSGPACK) msgpack_pack_array(&pk, 0);
    if (s->encoding == SHMRPC_ENC_JSON) shmrpc__dj_out_str(req, "{}");
    return 0;
}

static int encode_args(const shmrpc_dyn_sig *s, const char *json, size_t n, shmrpc_buf *req,
                       char *err, size_t cap)
{
    cx c = {.err = err, .cap = cap, .wire = true, .big = true};
    json_t *in = parse_json(&c, json, n, "arguments");
    if (in == NULL) return c.status ? c.status : SHMRPC_EINVAL;
    if (s->client_stream) {
        c.plen = (size_t)snprintf(c.path, sizeof c.path, "arguments");
        int rc = encode_no_args(s, &c, in, req);
        json_decref(in);
        return shmrpc__dj_status_of(&c, rc, req);
    }
    const json_t **args = calloc(s->n_params + 1, sizeof *args);
    json_t *null = json_null();
    int rc = args ? 0 : shmrpc__dj_nomem(&c);
    snprintf(c.path, sizeof c.path, "arguments");
    c.plen = strlen(c.path);
    if (rc == 0) rc = order_args(s, in, args, &c);
    msgpack_packer pk;
    msgpack_packer_init(&pk, req, shmrpc_buf_msgpack_write);
    if (rc == 0 && s->encoding == SHMRPC_ENC_MSGPACK) msgpack_pack_array(&pk, s->n_params);
    if (rc == 0 && s->encoding == SHMRPC_ENC_JSON) shmrpc__dj_out_str(req, "{");
    for (size_t i = 0; rc == 0 && i < s->n_params; i++) {
        const shmrpc_dyn_field *p = &s->params[i];
        const json_t *v = args[i] ? args[i] : null;
        c.plen = (size_t)snprintf(c.path, sizeof c.path, "argument '%.100s'", p->name);
        if (s->encoding == SHMRPC_ENC_RAW) {
            rc = raw_arg(&c, v, req);
        } else if (s->encoding == SHMRPC_ENC_JSON) {
            if (i) shmrpc__dj_out_str(req, ",");
            shmrpc__dj_out_json_str(req, p->name, strlen(p->name));
            shmrpc__dj_out_str(req, ":");
            rc = to_json(&c, p->type, v, req);
        } else {
            rc = to_mp(&c, p->type, v, &pk);
        }
    }
    if (rc == 0 && s->encoding == SHMRPC_ENC_JSON) shmrpc__dj_out_str(req, "}");
    free(args);
    json_decref(in);
    return shmrpc__dj_status_of(&c, rc, req);
}

static int decode_result(const shmrpc_dyn_sig *s, const char *what, const void *body, size_t n,
                         shmrpc_buf *out, char *err, size_t cap)
{
    cx c = {.err = err, .cap = cap};
    c.plen = (size_t)snprintf(c.path, sizeof c.path, "%s", what);
    int rc = 0;
    if (s->encoding == SHMRPC_ENC_RAW) {
        if (shmrpc__utf8_valid(body, n)) {
            shmrpc__dj_out_json_str(out, body, n);
        } else {
            shmrpc__dj_out_str(out, "{\"base64\":");
            shmrpc__dj_out_base64(&c, out, body, n);
            shmrpc__dj_out_str(out, "}");
        }
    } else if (s->encoding == SHMRPC_ENC_JSON) {
        json_t *v = parse_json(&c, body, n, "result");
        if (v == NULL) return c.status ? c.status : SHMRPC_EINVAL;
        rc = to_json(&c, s->result, v, out);
        json_decref(v);
    } else {
        shmrpc_mp_reader r;
        shmrpc_mp_reader_init(&r, body, n);
        rc = from_mp(&c, s->result, &r, out);
        if (rc == 0 && shmrpc_mp_finish(&r) != 0) rc = mp_fail(&c, &r);
    }
    return shmrpc__dj_status_of(&c, rc, out);
}

/* A JSON value of type t in s's encoding (what names it in messages): the result's is
 * what a server answers, and a typed queue's message (docs/queue.md); a streamed
 * parameter's type's is an item the client sends. */
static int encode_value(const shmrpc_dyn_sig *s, const shmrpc_dyn_type *t, const char *what,
                        const char *json, size_t n, shmrpc_buf *out, char *err, size_t cap)
{
    cx c = {.err = err, .cap = cap, .wire = true, .big = true};
    json_t *v = parse_json(&c, json, n, what);
    if (v == NULL) return c.status ? c.status : SHMRPC_EINVAL;
    c.plen = (size_t)snprintf(c.path, sizeof c.path, "%s", what);
    int rc;
    if (s->encoding == SHMRPC_ENC_RAW) {
        rc = raw_arg(&c, v, out);
    } else if (s->encoding == SHMRPC_ENC_JSON) {
        rc = to_json(&c, t, v, out);
    } else {
        msgpack_packer pk;
        msgpack_packer_init(&pk, out, shmrpc_buf_msgpack_write);
        rc = to_mp(&c, t, v, &pk);
    }
    json_decref(v);
    return shmrpc__dj_status_of(&c, rc, out);
}

/* The messages name a place and a value cut short, so this is room enough. */
#define ERR_CAP 768

/* What these calls cannot carry: a @pickle or @marshal method's bytes, Python objects
 * serialised by Python, which nothing here can write or read (docs/python.md, "speedysvc's
 * API"), and a streamed result's items, which are not one call's (docs/streams.md), unless
 * items (shmrpc_dyn_decode_item) or a request (shmrpc_dyn_encode_args) are asked for. A
 * streamed parameter's items are the client's (shmrpc_dyn_encode_item); its open's request
 * and its one answer are a call's. 0 for others. */
static int not_one_call(const shmrpc_dyn_sig *s, bool streamed_result)
{
    if (s->python_only)
        return shmrpc__err_set(SHMRPC_EINVAL, "a @%s method is called from Python only",
                               s->python_only);
    if (s->server_stream && !streamed_result)
        return shmrpc__err_set(SHMRPC_EINVAL,
                               "the method streams its result, which one call's JSON cannot "
                               "carry");
    return 0;
}

int shmrpc_dyn_encode_args(const shmrpc_dyn_sig *s, const char *json, size_t n, shmrpc_buf *req)
{
    int rc = not_one_call(s, true); /* a stream's open sends a call's arguments */
    if (rc != 0) return rc;
    char err[ERR_CAP];
    rc = encode_args(s, json, n, req, err, sizeof err);
    return rc == 0 ? 0 : shmrpc__err_set(rc, "%s", err);
}

int shmrpc_dyn_encode_result(const shmrpc_dyn_sig *s, const char *json, size_t n, shmrpc_buf *out)
{
    int rc = not_one_call(s, false);
    if (rc != 0) return rc;
    char err[ERR_CAP];
    rc = encode_value(s, s->result, "value", json, n, out, err, sizeof err);
    return rc == 0 ? 0 : shmrpc__err_set(rc, "%s", err);
}

int shmrpc_dyn_encode_item(const shmrpc_dyn_sig *s, const char *json, size_t n, shmrpc_buf *out)
{
    int rc = not_one_call(s, true);
    if (rc == 0 && !s->client_stream)
        rc = shmrpc__err_set(SHMRPC_EINVAL, "the method's parameter does not stream: it takes no "
                                            "items");
    if (rc != 0) return rc;
    char err[ERR_CAP];
    rc = encode_value(s, s->params[0].type, "item", json, n, out, err, sizeof err);
    return rc == 0 ? 0 : shmrpc__err_set(rc, "%s", err);
}

int shmrpc_dyn_decode_result(const shmrpc_dyn_sig *s, const void *body, size_t n, shmrpc_buf *out)
{
    int rc = not_one_call(s, false);
    if (rc != 0) return rc;
    char err[ERR_CAP];
    rc = decode_result(s, "result", body, n, out, err, sizeof err);
    return rc == 0 ? 0 : shmrpc__err_set(rc, "%s", err);
}

int shmrpc_dyn_decode_item(const shmrpc_dyn_sig *s, const void *body, size_t n, shmrpc_buf *out)
{
    int rc = not_one_call(s, true);
    if (rc == 0 && !s->server_stream)
        rc = shmrpc__err_set(SHMRPC_EINVAL, "the method answers once: it has no items");
    if (rc != 0) return rc;
    char err[ERR_CAP];
    rc = decode_result(s, "item", body, n, out, err, sizeof err);
    return rc == 0 ? 0 : shmrpc__err_set(rc, "%s", err);
}
