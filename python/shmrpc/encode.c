/* SPDX-License-Identifier: MIT */
/* Python values to the dynamic codec's JSON, or straight to msgpack, checked against their
 * type on the way: a client's arguments, a handler's result, a queue's or map's values. */
#include "pyshmrpc.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <msgpack.h>
#include <sodium.h>

#include <shmrpc/codec.h>
#include <shmrpc/dynamic.h>
#include <shmrpc/status.h>

/* --- Python values to the dynamic codec's JSON, or to msgpack ---------------------------
 * One walk checks a value against its type and writes it: as JSON text into b for the
 * codec to encode (pk NULL: @json methods, queues, maps), or, for a @msgpack call, as the
 * msgpack the codec would write for that JSON straight into the request through pk (the
 * same bytes: struct as an array of its fields in order, enum as its value, integers in
 * their smallest form, as runtime/src/codec/dynamic_json.c's to_mp), skipping the JSON. */

static int pyshm_put(shmrpc_buf *b, const char *s, size_t n)
{
    if (shmrpc_buf_append(b, s, n) != 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static int put_json_string(shmrpc_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (pyshm_put(b, "\"", 1) != 0) return -1;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
        if (pyshm_put(b, s + run, i - run) != 0) return -1;
        char esc[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
        if (ch == '"' || ch == '\\') {
            esc[1] = (char)ch;
            if (pyshm_put(b, esc, 2) != 0) return -1;
        } else if (pyshm_put(b, esc, 6) != 0) {
            return -1;
        }
        run = i + 1;
    }
    if (pyshm_put(b, s + run, n - run) != 0) return -1;
    return pyshm_put(b, "\"", 1);
}

/* p's n bytes as a JSON string of their base64, libsodium's (RFC 4648, standard alphabet,
 * padded), written in place (n is a Py_ssize_t: its text's length fits a size_t). */
static int put_base64(shmrpc_buf *b, const unsigned char *p, size_t n)
{
    size_t len = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL); /* with a NUL */
    if (pyshm_put(b, "\"", 1) != 0) return -1;
    if (shmrpc_buf_reserve(b, len) != 0) {
        PyErr_NoMemory();
        return -1;
    }
    sodium_bin2base64((char *)b->data + b->len, len, p, n, sodium_base64_VARIANT_ORIGINAL);
    b->len += len - 1;
    return pyshm_put(b, "\"", 1);
}

/* An integer of t's kind in its range, in *sv, or in *uv for a u64 above INT64_MAX (which
 * JSON must quote, as digits): 0, or 1 for such a u64; -1 raised. */
static int int_value(const shmrpc_dyn_type *t, PyObject *v, const place *p, long long *sv,
                     unsigned long long *uv)
{
    if (!PyLong_Check(v) || PyBool_Check(v))
        return pyshm_fail_at(PyExc_TypeError, p, "expected an int (%s), got %s", pyshm_kind_name(t),
                             Py_TYPE(v)->tp_name);
    static const struct {
        long long lo;
        unsigned long long hi;
    } range[] = {
        [SHMRPC_DYN_I8] = {INT8_MIN, INT8_MAX},    [SHMRPC_DYN_I16] = {INT16_MIN, INT16_MAX},
        [SHMRPC_DYN_I32] = {INT32_MIN, INT32_MAX}, [SHMRPC_DYN_I64] = {INT64_MIN, INT64_MAX},
        [SHMRPC_DYN_U8] = {0, UINT8_MAX},          [SHMRPC_DYN_U16] = {0, UINT16_MAX},
        [SHMRPC_DYN_U32] = {0, UINT32_MAX},        [SHMRPC_DYN_U64] = {0, UINT64_MAX},
    };
    int overflow;
    long long s = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (s == -1 && PyErr_Occurred()) return -1;
    if (overflow == 0 && s >= range[t->kind].lo &&
        (s < 0 || (unsigned long long)s <= range[t->kind].hi)) {
        *sv = s;
        return 0;
    }
    if (overflow > 0 && t->kind == SHMRPC_DYN_U64) {
        unsigned long long u = PyLong_AsUnsignedLongLong(v);
        if (!(u == (unsigned long long)-1 && PyErr_Occurred())) {
            *uv = u;
            return 1;
        }
        PyErr_Clear();
    }
    return pyshm_fail_shown(PyExc_OverflowError, p, v, "is out of the range of %s",
                            pyshm_kind_name(t));
}

/* An integer as JSON text (quoted when big), or packed. */
static int put_int(shmrpc_buf *b, msgpack_packer *pk, int big, long long sv, unsigned long long uv,
                   bool quote)
{
    char num[24];
    if (pk != NULL) return big ? msgpack_pack_uint64(pk, uv) : msgpack_pack_int64(pk, sv), 0;
    if (big)
        snprintf(num, sizeof num, "%llu", uv);
    else
        snprintf(num, sizeof num, "%lld", sv);
    if (quote || big) return put_json_string(b, num, strlen(num));
    return pyshm_put(b, num, strlen(num));
}

static int enc(shmrpc_buf *b, msgpack_packer *pk, const shmrpc_dyn_type *t, PyObject *v,
               const place *p, int depth);

static int encode_list(shmrpc_buf *b, msgpack_packer *pk, const shmrpc_dyn_type *t, PyObject *v,
                       const place *p, int depth)
{
    if (!PyList_Check(v) && !PyTuple_Check(v))
        return pyshm_fail_at(PyExc_TypeError, p, "expected a list, got %s", Py_TYPE(v)->tp_name);
    PyObject *seq = PySequence_Fast(v, "a list");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int rc = 0;
    if (pk != NULL && n > UINT32_MAX) rc = pyshm_fail_at(PyExc_ValueError, p, "too many elements");
    if (rc == 0) rc = pk ? msgpack_pack_array(pk, (size_t)n), 0 : pyshm_put(b, "[", 1);
    for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
        place here = {.up = p, .index = i};
        /* Python code may run within (an int subclass's __float__): it may change the
         * list, so the element is held, and a list whose length changed is refused (its
         * msgpack count is written already). */
        if (PySequence_Fast_GET_SIZE(seq) != n) {
            rc = pyshm_fail_at(PyExc_RuntimeError, p, "the list changed while it was being sent");
            break;
        }
        PyObject *e = Py_NewRef(PySequence_Fast_GET_ITEM(seq, i));
        if (i > 0 && !pk) rc = pyshm_put(b, ",", 1);
        if (rc == 0) rc = enc(b, pk, t->elem, e, &here, depth + 1);
        Py_DECREF(e);
    }
    Py_DECREF(seq);
    return rc == 0 ? (pk ? 0 : pyshm_put(b, "]", 1)) : -1;
}

static int encode_key(shmrpc_buf *b, msgpack_packer *pk, const shmrpc_dyn_type *kt, PyObject *k,
                      const place *p)
{
    long long sv = 0;
    unsigned long long uv = 0;
    switch (kt->kind) {
    case SHMRPC_DYN_STRING:
    case SHMRPC_DYN_ENUM:
        return enc(b, pk, kt, k, p, 0);
    default: {
        int big = int_value(kt, k, p, &sv, &uv);
        return big < 0 ? -1 : put_int(b, pk, big, sv, uv, true);
    }
    }
}

static int encode_map(shmrpc_buf *b, msgpack_packer *pk, const shmrpc_dyn_type *t, PyObject *v,
                      const place *p, int depth)
{
    if (!PyDict_Check(v))
        return pyshm_fail_at(PyExc_TypeError, p, "expected a dict (map), got %s",
                             Py_TYPE(v)->tp_name);
    /* A snapshot: the dict cannot change under the walk, whatever its keys' __repr__ do. */
    PyObject *items = PyDict_Items(v);
    if (items == NULL) return -1;
    int rc = pk ? msgpack_pack_map(pk, (size_t)PyList_GET_SIZE(items)), 0 : pyshm_put(b, "{", 1);
    for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(items); i++) {
        PyObject *kv = PyList_GET_ITEM(items, i);
        PyObject *k = PyTuple_GET_ITEM(kv, 0);
        place here = {.up = p, .key = k};
        if (i > 0 && !pk) rc = pyshm_put(b, ",", 1);
        if (rc == 0) rc = encode_key(b, pk, t->key, k, &here);
        if (rc == 0 && !pk) rc = pyshm_put(b, ":", 1);
        if (rc == 0) rc = enc(b, pk, t->elem, PyTuple_GET_ITEM(kv, 1), &here, depth + 1);
    }
    Py_DECREF(items);
    return rc == 0 ? (pk ? 0 : pyshm_put(b, "}", 1)) : -1;
}

static int encode_struct(shmrpc_buf *b, msgpack_packer *pk, const shmrpc_dyn_type *t, PyObject *v,
                         const place *p, int depth)
{
    if (!PyDict_Check(v))
        return pyshm_fail_at(PyExc_TypeError, p,
                             "expected a dict or shmrpc.Struct (struct %s), got %s", t->name,
                             Py_TYPE(v)->tp_name);
    PyObject *items = PyDict_Items(v);
    if (items == NULL) return -1;
    int rc = 0;
    /* Every key must name a field: a misspelt field is an error, not a silent default. */
    for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(items); i++) {
        PyObject *k = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 0);
        const char *ks = PyUnicode_Check(k) ? PyUnicode_AsUTF8(k) : NULL;
        if (ks == NULL) PyErr_Clear();
        size_t f = 0;
        while (ks != NULL && f < t->n && strcmp(t->fields[f].name, ks) != 0)
            f++;
        if (ks == NULL || f == t->n) {
            PyObject *sk = pyshm_shown(k);
            rc = sk ? pyshm_fail_at(PyExc_TypeError, p, "struct %s has no field %U", t->name, sk)
                    : -1;
            Py_XDECREF(sk);
        }
    }
    if (rc == 0) rc = pk ? msgpack_pack_array(pk, t->n), 0 : pyshm_put(b, "{", 1);
    bool first = true;
    for (size_t f = 0; rc == 0 && f < t->n; f++) {
        const shmrpc_dyn_field *fd = &t->fields[f];
        PyObject *fv = NULL;
        for (Py_ssize_t i = 0; fv == NULL && i < PyList_GET_SIZE(items); i++) {
            PyObject *kv = PyList_GET_ITEM(items, i);
            if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kv, 0), fd->name) == 0)
                fv = PyTuple_GET_ITEM(kv, 1);
        }
        place here = {.up = p, .field = fd->name};
        if (fv == NULL) {
            if (fd->type->kind != SHMRPC_DYN_OPT)
                rc = pyshm_fail_at(PyExc_TypeError, &here, "missing (struct %s)", t->name);
            else if (pk)
                msgpack_pack_nil(pk);
            continue;
        }
        if (pk) {
            rc = enc(b, pk, fd->type, fv, &here, depth + 1);
            continue;
        }
        if (!first) rc = pyshm_put(b, ",", 1);
        first = false;
        if (rc == 0) rc = put_json_string(b, fd->name, strlen(fd->name));
        if (rc == 0) rc = pyshm_put(b, ":", 1);
        if (rc == 0) rc = enc(b, pk, fd->type, fv, &here, depth + 1);
    }
    Py_DECREF(items);
    return rc == 0 ? (pk ? 0 : pyshm_put(b, "}", 1)) : -1;
}

/* --- any: native Python values --------------------------------------------------------
 * None, bool, int (i64 and u64), float, str, bytes (bytearray, memoryview: any buffer),
 * list and tuple, dict; a dict's keys the scalars among them. As msgpack through pk, or as
 * the codec's JSON for an any (docs/dynamic.md, "any"): bytes as {"base64": ...}, a dict
 * with a key that is no str (or holds a NUL, or that would read back as one of these forms)
 * as {"map": [[key, value], ...]}. */

static int encode_any(shmrpc_buf *b, msgpack_packer *pk, PyObject *v, const place *p, int depth,
                      bool key);

/* Whether a dict prints as a plain JSON object in the codec's JSON for an any. */
static int plain_dict(PyObject *items)
{
    Py_ssize_t n = PyList_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 0);
        if (!PyUnicode_Check(k)) return 0;
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(k, &len);
        if (s == NULL) {
            PyErr_Clear();
            return 0; /* said where the key is written */
        }
        if (memchr(s, 0, (size_t)len) != NULL) return 0;
        if (n == 1 && (strcmp(s, "base64") == 0 || strcmp(s, "map") == 0)) return 0;
    }
    return 1;
}

static int encode_any_dict(shmrpc_buf *b, msgpack_packer *pk, PyObject *v, const place *p,
                           int depth)
{
    /* A snapshot: the dict cannot change under the walk, whatever its keys' __repr__ do. */
    PyObject *items = PyDict_Items(v);
    if (items == NULL) return -1;
    Py_ssize_t n = PyList_GET_SIZE(items);
    int rc = 0;
    if (pk != NULL && n > UINT32_MAX) rc = pyshm_fail_at(PyExc_ValueError, p, "too many entries");
    int plain = pk ? 0 : plain_dict(items);
    if (rc == 0)
        rc = pk ? msgpack_pack_map(pk, (size_t)n),
        0       : pyshm_put(b, plain ? "{" : "{\"map\":[", plain ? 1 : 8);
    for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
        PyObject *kv = PyList_GET_ITEM(items, i);
        place here = {.up = p, .key = PyTuple_GET_ITEM(kv, 0)};
        if (i > 0 && !pk) rc = pyshm_put(b, ",", 1);
        if (rc == 0 && !pk && !plain) rc = pyshm_put(b, "[", 1);
        if (rc == 0) rc = encode_any(b, pk, PyTuple_GET_ITEM(kv, 0), &here, depth + 1, true);
        if (rc == 0 && !pk) rc = pyshm_put(b, plain ? ":" : ",", 1);
        if (rc == 0) rc = encode_any(b, pk, PyTuple_GET_ITEM(kv, 1), &here, depth + 1, false);
        if (rc == 0 && !pk && !plain) rc = pyshm_put(b, "]", 1);
    }
    Py_DECREF(items);
    return rc == 0 ? (pk ? 0 : pyshm_put(b, plain ? "}" : "]}", plain ? 1 : 2)) : -1;
}

static int encode_any(shmrpc_buf *b, msgpack_packer *pk, PyObject *v, const place *p, int depth,
                      bool key)
{
    if (depth > PYSHM_MAX_DEPTH)
        return pyshm_fail_at(PyExc_ValueError, p, "nested more than %d deep", PYSHM_MAX_DEPTH);
    if (v == Py_None) return pk ? msgpack_pack_nil(pk), 0 : pyshm_put(b, "null", 4);
    if (PyBool_Check(v)) {
        if (pk) return (v == Py_True ? msgpack_pack_true(pk) : msgpack_pack_false(pk)), 0;
        return v == Py_True ? pyshm_put(b, "true", 4) : pyshm_put(b, "false", 5);
    }
    if (PyLong_Check(v)) {
        int overflow;
        long long sv = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (sv == -1 && PyErr_Occurred()) return -1;
        unsigned long long uv = 0;
        if (overflow > 0) {
            uv = PyLong_AsUnsignedLongLong(v);
            if (uv == (unsigned long long)-1 && PyErr_Occurred()) {
                PyErr_Clear();
                overflow = 2;
            }
        }
        if (overflow < 0 || overflow == 2)
            return pyshm_fail_shown(PyExc_OverflowError, p, v,
                                    "is out of the range of an any's integers (i64 and u64)");
        if (pk) return (overflow ? msgpack_pack_uint64(pk, uv) : msgpack_pack_int64(pk, sv)), 0;
        char num[24];
        if (overflow)
            snprintf(num, sizeof num, "%llu", uv);
        else
            snprintf(num, sizeof num, "%lld", sv);
        return pyshm_put(b, num, strlen(num));
    }
    if (PyFloat_Check(v)) {
        double d = PyFloat_AS_DOUBLE(v);
        if (!isfinite(d))
            return pyshm_fail_shown(PyExc_ValueError, p, v,
                                    "cannot be sent (JSON has no NaN or infinity)");
        if (pk) return msgpack_pack_double(pk, d), 0;
        /* repr's text, with ".0" on whole numbers, so that it reads back as a float */
        char *text = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (text == NULL) return -1;
        int rc = pyshm_put(b, text, strlen(text));
        PyMem_Free(text);
        return rc;
    }
    if (PyUnicode_Check(v)) {
        static const shmrpc_dyn_type string = {.kind = SHMRPC_DYN_STRING};
        return enc(b, pk, &string, v, p, depth);
    }
    if (PyObject_CheckBuffer(v)) {
        Py_buffer view;
        if (PyObject_GetBuffer(v, &view, PyBUF_SIMPLE) != 0) {
            PyErr_Clear();
            return pyshm_fail_at(PyExc_TypeError, p, "%s is no contiguous buffer of bytes",
                                 Py_TYPE(v)->tp_name);
        }
        int rc = 0;
        if (pk)
            msgpack_pack_bin_with_body(pk, view.buf, (size_t)view.len);
        else if ((rc = pyshm_put(b, "{\"base64\":", 10)) == 0 &&
                 (rc = put_base64(b, view.buf, (size_t)view.len)) == 0)
            rc = pyshm_put(b, "}", 1);
        PyBuffer_Release(&view);
        return rc;
    }
    if (key)
        return pyshm_fail_at(
            PyExc_TypeError, p,
            "a key of a dict in an any must be None, bool, int, float, str or bytes, "
            "got %s",
            Py_TYPE(v)->tp_name);
    /* A list or dict here would be the 129th level of lists and maps, which no reader of an
     * any takes (SHMRPC_ANY_PYSHM_MAX_DEPTH): refused here, not by the peer. */
    if (depth >= PYSHM_MAX_DEPTH && (PyList_Check(v) || PyTuple_Check(v) || PyDict_Check(v)))
        return pyshm_fail_at(PyExc_ValueError, p, "nested more than %d deep", PYSHM_MAX_DEPTH);
    if (PyList_Check(v) || PyTuple_Check(v)) {
        /* A list of anys, as a typed list<any> is written. */
        static const shmrpc_dyn_type any = {.kind = SHMRPC_DYN_ANY};
        static const shmrpc_dyn_type list = {.kind = SHMRPC_DYN_LIST, .elem = &any};
        return encode_list(b, pk, &list, v, p, depth);
    }
    if (PyDict_Check(v)) return encode_any_dict(b, pk, v, p, depth);
    return pyshm_fail_at(PyExc_TypeError, p,
                         "expected a value an any holds (None, bool, int, float, str, bytes, list, "
                         "tuple or dict), got %s",
                         Py_TYPE(v)->tp_name);
}

int pyshm_encode(shmrpc_buf *b, const shmrpc_dyn_type *t, PyObject *v, const place *p, int depth)
{
    return enc(b, NULL, t, v, p, depth);
}

int pyshm_encode_mp(msgpack_packer *pk, const shmrpc_dyn_type *t, PyObject *v, const place *p)
{
    return enc(NULL, pk, t, v, p, 0);
}

static int enc(shmrpc_buf *b, msgpack_packer *pk, const shmrpc_dyn_type *t, PyObject *v,
               const place *p, int depth)
{
    if (depth > PYSHM_MAX_DEPTH)
        return pyshm_fail_at(PyExc_ValueError, p, "nested more than %d deep", PYSHM_MAX_DEPTH);
    if (shmrpc_dyn_is_int(t->kind)) {
        long long sv = 0;
        unsigned long long uv = 0;
        int big = int_value(t, v, p, &sv, &uv);
        if (big < 0) return -1;
        return put_int(b, pk, big, sv, uv, false);
    }
    char num[40];
    switch (t->kind) {
    case SHMRPC_DYN_BOOL:
        if (!PyBool_Check(v))
            return pyshm_fail_at(PyExc_TypeError, p, "expected a bool, got %s",
                                 Py_TYPE(v)->tp_name);
        if (pk) return (v == Py_True ? msgpack_pack_true(pk) : msgpack_pack_false(pk)), 0;
        return v == Py_True ? pyshm_put(b, "true", 4) : pyshm_put(b, "false", 5);
    case SHMRPC_DYN_F32:
    case SHMRPC_DYN_F64: {
        if (PyBool_Check(v) || (!PyFloat_Check(v) && !PyLong_Check(v)))
            return pyshm_fail_at(PyExc_TypeError, p, "expected a float (%s), got %s",
                                 pyshm_kind_name(t), Py_TYPE(v)->tp_name);
        double d = PyFloat_AsDouble(v);
        if (d == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return pyshm_fail_shown(PyExc_OverflowError, p, v, "is out of the range of %s",
                                    pyshm_kind_name(t));
        }
        if (!isfinite(d))
            return pyshm_fail_shown(PyExc_ValueError, p, v,
                                    "cannot be sent (JSON has no NaN or infinity)");
        if (t->kind == SHMRPC_DYN_F32 && fabs(d) > 3.4028234663852886e38)
            return pyshm_fail_shown(PyExc_OverflowError, p, v, "is out of the range of f32");
        if (pk)
            return (t->kind == SHMRPC_DYN_F32 ? msgpack_pack_float(pk, (float)d)
                                              : msgpack_pack_double(pk, d)),
                   0;
        snprintf(num, sizeof num, "%.17g", d);
        return pyshm_put(b, num, strlen(num));
    }
    case SHMRPC_DYN_STRING: {
        if (!PyUnicode_Check(v))
            return pyshm_fail_at(PyExc_TypeError, p, "expected a str, got %s", Py_TYPE(v)->tp_name);
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(v, &n);
        if (s == NULL) {
            PyErr_Clear();
            return pyshm_fail_at(PyExc_ValueError, p,
                                 "the str is not valid Unicode (a lone surrogate)");
        }
        if (pk) return msgpack_pack_str_with_body(pk, s, (size_t)n), 0;
        return put_json_string(b, s, (size_t)n);
    }
    case SHMRPC_DYN_BYTES: {
        Py_buffer view;
        if (PyUnicode_Check(v) || PyObject_GetBuffer(v, &view, PyBUF_SIMPLE) != 0) {
            PyErr_Clear();
            return pyshm_fail_at(PyExc_TypeError, p, "expected bytes, got %s", Py_TYPE(v)->tp_name);
        }
        int rc = 0;
        if (pk)
            msgpack_pack_bin_with_body(pk, view.buf, (size_t)view.len);
        else
            rc = put_base64(b, view.buf, (size_t)view.len);
        PyBuffer_Release(&view);
        return rc;
    }
    case SHMRPC_DYN_OPT:
        if (v == Py_None) return pk ? msgpack_pack_nil(pk), 0 : pyshm_put(b, "null", 4);
        return enc(b, pk, t->elem, v, p, depth);
    case SHMRPC_DYN_LIST:
        return encode_list(b, pk, t, v, p, depth);
    case SHMRPC_DYN_MAP:
        return encode_map(b, pk, t, v, p, depth);
    case SHMRPC_DYN_STRUCT:
        return encode_struct(b, pk, t, v, p, depth);
    case SHMRPC_DYN_ANY:
        return encode_any(b, pk, v, p, depth, false);
    case SHMRPC_DYN_ENUM: {
        const char *s = PyUnicode_Check(v) ? PyUnicode_AsUTF8(v) : NULL;
        if (s == NULL) {
            PyErr_Clear();
            return pyshm_fail_at(PyExc_TypeError, p,
                                 "expected the name of a value of enum %s (a str), got %s", t->name,
                                 Py_TYPE(v)->tp_name);
        }
        for (size_t i = 0; i < t->n; i++)
            if (strcmp(t->values[i].name, s) == 0)
                return pk ? msgpack_pack_int64(pk, t->values[i].value),
                       0  : put_json_string(b, s, strlen(s));
        return pyshm_fail_at(PyExc_ValueError, p, "enum %s has no value %R", t->name, v);
    }
    default:
        return pyshm_fail_at(PyExc_TypeError, p, "a %s cannot be sent", pyshm_kind_name(t));
    }
}

int pyshm_encode_body(const shmrpc_dyn_sig *sig, PyObject *v, const char *what, shmrpc_buf *json,
                      shmrpc_buf *out)
{
    place top = {.field = what, .bare = true};
    shmrpc_buf_clear(json);
    shmrpc_buf_clear(out);
    if (pyshm_encode(json, sig->result, v, &top, 0) != 0) return -1;
    if (shmrpc_dyn_encode_result(sig, (const char *)json->data, json->len, out) != 0) {
        /* The codec names the value's place itself ("value[\"a\"]: ...") as the one that
         * holds what: it is not said twice. */
        const char *msg = shmrpc_errmsg();
        size_t n = strlen(what);
        bool named =
            strncmp(msg, what, n) == 0 && (msg[n] == ':' || msg[n] == '[' || msg[n] == '.');
        if (named)
            PyErr_SetString(PyExc_ValueError, msg);
        else
            PyErr_Format(PyExc_ValueError, "%s: %s", what, msg);
        return -1;
    }
    return 0;
}

/* The JSON arguments (an object by parameter name) into req; raises on a bad value. */
int pyshm_encode_args(const shmrpc_dyn_sig *sig, PyObject **argv, shmrpc_buf *json)
{
    shmrpc_buf_clear(json);
    if (pyshm_put(json, "{", 1) != 0) return -1;
    bool first = true;
    for (size_t i = 0; i < sig->n_params; i++) {
        if (argv[i] == NULL) continue;
        const char *name = sig->params[i].name;
        place here = {.field = name};
        if ((!first && pyshm_put(json, ",", 1) != 0) ||
            put_json_string(json, name, strlen(name)) != 0 || pyshm_put(json, ":", 1) != 0 ||
            pyshm_encode(json, sig->params[i].type, argv[i], &here, 0) != 0)
            return -1;
        first = false;
    }
    return pyshm_put(json, "}", 1);
}
