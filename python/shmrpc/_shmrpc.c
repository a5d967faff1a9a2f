/* SPDX-License-Identifier: MIT */
/* shmrpc._shmrpc: the CPython extension under `import shmrpc`, a client of any shmrpc
 * service. The server's own method table drives the conversions through the library's
 * dynamic codec (shmrpc/dynamic.h): Python values are checked against the method's parsed
 * signature and written as its JSON arguments, the result comes back through the codec's
 * JSON and is turned into Python values by the same signature (docs/python.md). @raw
 * methods skip the codec: their bytes go to the wire as they are. */
#include "pyshmrpc.h"

#include <structmember.h>

#include <math.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

#include <shmrpc/any.h>
#include <shmrpc/client.h>
#include <shmrpc/codec.h>
#include <shmrpc/dynamic.h>
#include <shmrpc/status.h>
#include <shmrpc/tcp.h>

/* Nesting of an argument, as the dynamic codec's own bound (docs/dynamic.md): deeper
 * values, and values that hold themselves, fail with the place rather than recursing on. */
#define MAX_DEPTH 128

PyObject *pyshm_Error, *pyshm_Timeout, *pyshm_Unavailable, *pyshm_Mismatch, *pyshm_HandlerError,
    *pyshm_PeerDied;
static PyObject *json_loads, *a2b_base64, *struct_factory; /* struct_factory: set by __init__ */

/* --- errors -------------------------------------------------------------------------- */

/* Raises the exception for a failed library call: rc's class (or cls), with the status,
 * its name and the thread's message (read at once: the next shmrpc call may replace it).
 * sent: the request had left, so that a timeout, a death or a lost server may have come
 * after the handler ran (docs/shm-transport.md), unless the library says it did not. */
PyObject *pyshm_raise_as(PyObject *cls, int rc, const char *what, const char *msg, bool sent)
{
    bool may_have_run = false;
    switch (rc) {
    case SHMRPC_ETIMEDOUT:
    case SHMRPC_EUNAVAIL:
    case SHMRPC_EPEERDIED:
        may_have_run = sent && strstr(msg, "did not run") == NULL;
        break;
    case SHMRPC_EHANDLER:
        may_have_run = true;
        break;
    default:
        may_have_run = cls == pyshm_HandlerError;
        break;
    }
    if (cls == NULL) {
        switch (rc) {
        case SHMRPC_ETIMEDOUT:
            cls = pyshm_Timeout;
            break;
        case SHMRPC_EUNAVAIL:
        case SHMRPC_ENOENT:
        case SHMRPC_ECLOSED:
            cls = pyshm_Unavailable;
            break;
        case SHMRPC_EMISMATCH:
        case SHMRPC_EVERSION:
            cls = pyshm_Mismatch;
            break;
        case SHMRPC_EPEERDIED:
            cls = pyshm_PeerDied;
            break;
        case SHMRPC_EHANDLER:
            cls = pyshm_HandlerError;
            break;
        default:
            cls = pyshm_Error;
            break;
        }
    }
    PyObject *text =
        PyUnicode_FromFormat("%s: %s%s%s", what, shmrpc_strerror(rc), *msg ? ": " : "", msg);
    if (text == NULL) return NULL;
    PyObject *exc = PyObject_CallOneArg(cls, text);
    Py_DECREF(text);
    if (exc == NULL) return NULL;
    PyObject *m = PyUnicode_DecodeUTF8(msg, (Py_ssize_t)strlen(msg), "replace");
    PyObject *st = PyLong_FromLong(rc);
    PyObject *nm = PyUnicode_FromString(shmrpc_status_name(rc));
    if (m && st && nm && PyObject_SetAttrString(exc, "message", m) == 0 &&
        PyObject_SetAttrString(exc, "status", st) == 0 &&
        PyObject_SetAttrString(exc, "status_name", nm) == 0 &&
        PyObject_SetAttrString(exc, "may_have_run", may_have_run ? Py_True : Py_False) == 0)
        PyErr_SetObject(cls, exc);
    Py_XDECREF(m), Py_XDECREF(st), Py_XDECREF(nm);
    Py_DECREF(exc);
    return NULL;
}

PyObject *pyshm_raise_status(int rc, const char *what, const char *msg)
{
    return pyshm_raise_as(NULL, rc, what, msg, false);
}

/* --- the place inside an argument, for messages ---------------------------------------- */

/* v as a message shows it (new reference): a number as its own type writes it, since a
 * subclass's __repr__ may raise, and an int too long for str() (sys.get_int_max_str_digits)
 * by its size; anything else by repr, or by its type's name when repr fails. NULL only when
 * memory ran out. */
static PyObject *shown(PyObject *v)
{
    if (PyLong_Check(v)) {
        PyObject *bits = PyObject_CallMethod((PyObject *)&PyLong_Type, "bit_length", "O", v);
        Py_ssize_t n = bits ? PyLong_AsSsize_t(bits) : -1;
        Py_XDECREF(bits);
        if (n > 256) return PyUnicode_FromFormat("an int of %zd bits", n);
        if (n >= 0) return PyLong_Type.tp_repr(v);
    } else if (PyFloat_Check(v)) {
        return PyFloat_Type.tp_repr(v);
    } else {
        PyObject *r = PyObject_Repr(v);
        if (r != NULL) return r;
    }
    PyErr_Clear();
    return PyUnicode_FromFormat("<%s object>", Py_TYPE(v)->tp_name);
}

static void place_render(const place *p, PyObject *parts)
{
    if (p == NULL) return;
    place_render(p->up, parts);
    PyObject *s;
    if (p->up == NULL)
        s = p->bare ? PyUnicode_FromString(p->field)
                    : PyUnicode_FromFormat("argument '%s'", p->field);
    else if (p->field != NULL)
        s = PyUnicode_FromFormat(".%s", p->field);
    else if (p->key != NULL) {
        PyObject *k = shown(p->key);
        s = k ? PyUnicode_FromFormat("[%U]", k) : NULL;
        Py_XDECREF(k);
    } else
        s = PyUnicode_FromFormat("[%zd]", p->index);
    if (s != NULL) PyList_Append(parts, s);
    Py_XDECREF(s);
}

/* Raises cls with "argument 'points'[1].x: WHY". Returns -1. */
static int fail_at(PyObject *cls, const place *p, const char *fmt, ...)
{
    PyObject *parts = PyList_New(0);
    if (parts == NULL) return -1;
    place_render(p, parts);
    va_list ap;
    va_start(ap, fmt);
    PyObject *why = PyUnicode_FromFormatV(fmt, ap);
    va_end(ap);
    PyObject *sep = PyUnicode_FromString("");
    PyObject *where = sep ? PyUnicode_Join(sep, parts) : NULL;
    if (why && where) PyErr_Format(cls, "%U: %U", where, why);
    Py_XDECREF(sep), Py_XDECREF(where), Py_XDECREF(why);
    Py_DECREF(parts);
    return -1;
}

/* Raises cls with "PLACE: V WHY", v as shown() shows it. Returns -1. */
static int fail_shown(PyObject *cls, const place *p, PyObject *v, const char *why, ...)
{
    PyObject *sv = shown(v);
    if (sv == NULL) return -1;
    va_list ap;
    va_start(ap, why);
    PyObject *w = PyUnicode_FromFormatV(why, ap);
    va_end(ap);
    int rc = w ? fail_at(cls, p, "%U %U", sv, w) : -1;
    Py_DECREF(sv);
    Py_XDECREF(w);
    return rc;
}

static const char *kind_name(const shmrpc_dyn_type *t)
{
    static const char *const names[] = {
        [SHMRPC_DYN_VOID] = "void",     [SHMRPC_DYN_BOOL] = "bool",
        [SHMRPC_DYN_I8] = "i8",         [SHMRPC_DYN_I16] = "i16",
        [SHMRPC_DYN_I32] = "i32",       [SHMRPC_DYN_I64] = "i64",
        [SHMRPC_DYN_U8] = "u8",         [SHMRPC_DYN_U16] = "u16",
        [SHMRPC_DYN_U32] = "u32",       [SHMRPC_DYN_U64] = "u64",
        [SHMRPC_DYN_F32] = "f32",       [SHMRPC_DYN_F64] = "f64",
        [SHMRPC_DYN_STRING] = "string", [SHMRPC_DYN_BYTES] = "bytes",
        [SHMRPC_DYN_LIST] = "list",     [SHMRPC_DYN_MAP] = "map",
        [SHMRPC_DYN_OPT] = "optional",  [SHMRPC_DYN_STRUCT] = "struct",
        [SHMRPC_DYN_ENUM] = "enum",     [SHMRPC_DYN_ANY] = "any",
    };
    return t->kind <= SHMRPC_DYN_ANY ? names[t->kind] : "?";
}

/* --- Python values to the dynamic codec's JSON, or to msgpack ---------------------------
 * One walk checks a value against its type and writes it: as JSON text into b for the
 * codec to encode (pk NULL: @json methods, queues, maps), or, for a @msgpack call, as the
 * msgpack the codec would write for that JSON straight into the request through pk (the
 * same bytes: struct as an array of its fields in order, enum as its value, integers in
 * their smallest form, as runtime/src/codec/dynamic_json.c's to_mp), skipping the JSON. */

int pyshm_put(shmrpc_buf *b, const char *s, size_t n)
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

static int put_base64(shmrpc_buf *b, const unsigned char *p, size_t n)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (pyshm_put(b, "\"", 1) != 0) return -1;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        char q[4] = {al[v >> 18], al[(v >> 12) & 63], i + 1 < n ? al[(v >> 6) & 63] : '=',
                     i + 2 < n ? al[v & 63] : '='};
        if (pyshm_put(b, q, 4) != 0) return -1;
    }
    return pyshm_put(b, "\"", 1);
}

/* An integer of t's kind in its range, in *sv, or in *uv for a u64 above INT64_MAX (which
 * JSON must quote, as digits): 0, or 1 for such a u64; -1 raised. */
static int int_value(const shmrpc_dyn_type *t, PyObject *v, const place *p, long long *sv,
                     unsigned long long *uv)
{
    if (!PyLong_Check(v) || PyBool_Check(v))
        return fail_at(PyExc_TypeError, p, "expected an int (%s), got %s", kind_name(t),
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
    return fail_shown(PyExc_OverflowError, p, v, "is out of the range of %s", kind_name(t));
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
        return fail_at(PyExc_TypeError, p, "expected a list, got %s", Py_TYPE(v)->tp_name);
    PyObject *seq = PySequence_Fast(v, "a list");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int rc = 0;
    if (pk != NULL && n > UINT32_MAX) rc = fail_at(PyExc_ValueError, p, "too many elements");
    if (rc == 0) rc = pk ? msgpack_pack_array(pk, (size_t)n), 0 : pyshm_put(b, "[", 1);
    for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
        place here = {.up = p, .index = i};
        /* Python code may run within (an int subclass's __float__): it may change the
         * list, so the element is held, and a list whose length changed is refused (its
         * msgpack count is written already). */
        if (PySequence_Fast_GET_SIZE(seq) != n) {
            rc = fail_at(PyExc_RuntimeError, p, "the list changed while it was being sent");
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
        return fail_at(PyExc_TypeError, p, "expected a dict (map), got %s", Py_TYPE(v)->tp_name);
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
        return fail_at(PyExc_TypeError, p, "expected a dict or shmrpc.Struct (struct %s), got %s",
                       t->name, Py_TYPE(v)->tp_name);
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
            PyObject *sk = shown(k);
            rc = sk ? fail_at(PyExc_TypeError, p, "struct %s has no field %U", t->name, sk) : -1;
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
                rc = fail_at(PyExc_TypeError, &here, "missing (struct %s)", t->name);
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
    if (pk != NULL && n > UINT32_MAX) rc = fail_at(PyExc_ValueError, p, "too many entries");
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
    if (depth > MAX_DEPTH)
        return fail_at(PyExc_ValueError, p, "nested more than %d deep", MAX_DEPTH);
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
            return fail_shown(PyExc_OverflowError, p, v,
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
            return fail_shown(PyExc_ValueError, p, v,
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
            return fail_at(PyExc_TypeError, p, "%s is no contiguous buffer of bytes",
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
        return fail_at(PyExc_TypeError, p,
                       "a key of a dict in an any must be None, bool, int, float, str or bytes, "
                       "got %s",
                       Py_TYPE(v)->tp_name);
    /* A list or dict here would be the 129th level of lists and maps, which no reader of an
     * any takes (SHMRPC_ANY_MAX_DEPTH): refused here, not by the peer. */
    if (depth >= MAX_DEPTH && (PyList_Check(v) || PyTuple_Check(v) || PyDict_Check(v)))
        return fail_at(PyExc_ValueError, p, "nested more than %d deep", MAX_DEPTH);
    if (PyList_Check(v) || PyTuple_Check(v)) {
        /* A list of anys, as a typed list<any> is written. */
        static const shmrpc_dyn_type any = {.kind = SHMRPC_DYN_ANY};
        static const shmrpc_dyn_type list = {.kind = SHMRPC_DYN_LIST, .elem = &any};
        return encode_list(b, pk, &list, v, p, depth);
    }
    if (PyDict_Check(v)) return encode_any_dict(b, pk, v, p, depth);
    return fail_at(PyExc_TypeError, p,
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
    if (depth > MAX_DEPTH)
        return fail_at(PyExc_ValueError, p, "nested more than %d deep", MAX_DEPTH);
    char num[40];
    switch (t->kind) {
    case SHMRPC_DYN_BOOL:
        if (!PyBool_Check(v))
            return fail_at(PyExc_TypeError, p, "expected a bool, got %s", Py_TYPE(v)->tp_name);
        if (pk) return (v == Py_True ? msgpack_pack_true(pk) : msgpack_pack_false(pk)), 0;
        return v == Py_True ? pyshm_put(b, "true", 4) : pyshm_put(b, "false", 5);
    case SHMRPC_DYN_I8:
    case SHMRPC_DYN_I16:
    case SHMRPC_DYN_I32:
    case SHMRPC_DYN_I64:
    case SHMRPC_DYN_U8:
    case SHMRPC_DYN_U16:
    case SHMRPC_DYN_U32:
    case SHMRPC_DYN_U64: {
        long long sv = 0;
        unsigned long long uv = 0;
        int big = int_value(t, v, p, &sv, &uv);
        if (big < 0) return -1;
        return put_int(b, pk, big, sv, uv, false);
    }
    case SHMRPC_DYN_F32:
    case SHMRPC_DYN_F64: {
        if (PyBool_Check(v) || (!PyFloat_Check(v) && !PyLong_Check(v)))
            return fail_at(PyExc_TypeError, p, "expected a float (%s), got %s", kind_name(t),
                           Py_TYPE(v)->tp_name);
        double d = PyFloat_AsDouble(v);
        if (d == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return fail_shown(PyExc_OverflowError, p, v, "is out of the range of %s", kind_name(t));
        }
        if (!isfinite(d))
            return fail_shown(PyExc_ValueError, p, v,
                              "cannot be sent (JSON has no NaN or infinity)");
        if (t->kind == SHMRPC_DYN_F32 && fabs(d) > 3.4028234663852886e38)
            return fail_shown(PyExc_OverflowError, p, v, "is out of the range of f32");
        if (pk)
            return (t->kind == SHMRPC_DYN_F32 ? msgpack_pack_float(pk, (float)d)
                                              : msgpack_pack_double(pk, d)),
                   0;
        snprintf(num, sizeof num, "%.17g", d);
        return pyshm_put(b, num, strlen(num));
    }
    case SHMRPC_DYN_STRING: {
        if (!PyUnicode_Check(v))
            return fail_at(PyExc_TypeError, p, "expected a str, got %s", Py_TYPE(v)->tp_name);
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(v, &n);
        if (s == NULL) {
            PyErr_Clear();
            return fail_at(PyExc_ValueError, p, "the str is not valid Unicode (a lone surrogate)");
        }
        if (pk) return msgpack_pack_str_with_body(pk, s, (size_t)n), 0;
        return put_json_string(b, s, (size_t)n);
    }
    case SHMRPC_DYN_BYTES: {
        Py_buffer view;
        if (PyUnicode_Check(v) || PyObject_GetBuffer(v, &view, PyBUF_SIMPLE) != 0) {
            PyErr_Clear();
            return fail_at(PyExc_TypeError, p, "expected bytes, got %s", Py_TYPE(v)->tp_name);
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
            return fail_at(PyExc_TypeError, p,
                           "expected the name of a value of enum %s (a str), got %s", t->name,
                           Py_TYPE(v)->tp_name);
        }
        for (size_t i = 0; i < t->n; i++)
            if (strcmp(t->values[i].name, s) == 0)
                return pk ? msgpack_pack_int64(pk, t->values[i].value),
                       0  : put_json_string(b, s, strlen(s));
        return fail_at(PyExc_ValueError, p, "enum %s has no value %R", t->name, v);
    }
    default:
        return fail_at(PyExc_TypeError, p, "a %s cannot be sent", kind_name(t));
    }
}

/* --- the codec's JSON result to Python values ------------------------------------------- */

PyObject *pyshm_fix(const shmrpc_dyn_type *t, PyObject *v, int depth);

/* Replaces *slot with pyshm_fix(t, *slot). */
static int fix_slot(const shmrpc_dyn_type *t, PyObject **slot, int depth)
{
    PyObject *nv = pyshm_fix(t, *slot, depth);
    if (nv == NULL) return -1;
    Py_SETREF(*slot, nv);
    return 0;
}

/* Returns a new reference: v (as json.loads made it) as t's Python value. The codec has
 * checked the result against the signature, so the shapes are right here. */
/* An any as json.loads made it of the codec's JSON: its two forms undone (docs/dynamic.md,
 * "any"). Returns a new reference. */
static PyObject *fix_any(PyObject *v, int depth)
{
    if (depth > MAX_DEPTH + 8) return PyErr_Format(pyshm_Error, "result nested too deep");
    if (PyList_Check(v)) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); i++) {
            PyObject *nv = fix_any(PyList_GET_ITEM(v, i), depth + 1);
            if (nv == NULL) return NULL;
            Py_SETREF(PyList_GET_ITEM(v, i), nv);
        }
        return Py_NewRef(v);
    }
    if (!PyDict_Check(v)) return Py_NewRef(v);
    if (PyDict_GET_SIZE(v) == 1) {
        PyObject *b64 = PyDict_GetItemString(v, "base64");
        if (b64 != NULL && PyUnicode_Check(b64)) return PyObject_CallOneArg(a2b_base64, b64);
        PyObject *pairs = PyDict_GetItemString(v, "map");
        if (pairs != NULL && PyList_Check(pairs)) {
            PyObject *out = PyDict_New();
            for (Py_ssize_t i = 0; out != NULL && i < PyList_GET_SIZE(pairs); i++) {
                PyObject *kv = PyList_GET_ITEM(pairs, i);
                if (!PyList_Check(kv) || PyList_GET_SIZE(kv) != 2) {
                    Py_CLEAR(out);
                    return PyErr_Format(pyshm_Error, "result: an any's map entry is no pair");
                }
                PyObject *k = fix_any(PyList_GET_ITEM(kv, 0), depth + 1);
                PyObject *val = k ? fix_any(PyList_GET_ITEM(kv, 1), depth + 1) : NULL;
                if (val == NULL || PyDict_SetItem(out, k, val) != 0) Py_CLEAR(out);
                Py_XDECREF(k), Py_XDECREF(val);
            }
            return out;
        }
    }
    PyObject *k, *val;
    Py_ssize_t pos = 0;
    while (PyDict_Next(v, &pos, &k, &val)) {
        PyObject *nv = fix_any(val, depth + 1);
        if (nv == NULL) return NULL;
        /* Replacing the value of a key that is there does not resize the dict. */
        int rc = PyDict_SetItem(v, k, nv);
        Py_DECREF(nv);
        if (rc != 0) return NULL;
    }
    return Py_NewRef(v);
}

PyObject *pyshm_fix(const shmrpc_dyn_type *t, PyObject *v, int depth)
{
    if (depth > MAX_DEPTH + 8) return PyErr_Format(pyshm_Error, "result nested too deep");
    switch (t->kind) {
    case SHMRPC_DYN_ANY:
        return fix_any(v, depth);
    case SHMRPC_DYN_BYTES:
        return PyObject_CallOneArg(a2b_base64, v);
    case SHMRPC_DYN_F32:
    case SHMRPC_DYN_F64:
        return PyNumber_Float(v);
    case SHMRPC_DYN_OPT:
        if (v == Py_None) return Py_NewRef(v);
        return pyshm_fix(t->elem, v, depth);
    case SHMRPC_DYN_LIST:
        if (!PyList_Check(v)) break;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); i++)
            if (fix_slot(t->elem, &PyList_GET_ITEM(v, i), depth + 1) != 0) return NULL;
        return Py_NewRef(v);
    case SHMRPC_DYN_MAP: {
        if (!PyDict_Check(v)) break;
        PyObject *out = PyDict_New();
        PyObject *k, *val;
        Py_ssize_t pos = 0;
        while (out != NULL && PyDict_Next(v, &pos, &k, &val)) {
            bool int_key = t->key->kind != SHMRPC_DYN_STRING && t->key->kind != SHMRPC_DYN_ENUM;
            PyObject *nk = int_key ? PyLong_FromUnicodeObject(k, 10) : Py_NewRef(k);
            PyObject *nv = nk ? pyshm_fix(t->elem, val, depth + 1) : NULL;
            if (nv == NULL || PyDict_SetItem(out, nk, nv) != 0) Py_CLEAR(out);
            Py_XDECREF(nk), Py_XDECREF(nv);
        }
        return out;
    }
    case SHMRPC_DYN_STRUCT: {
        if (!PyDict_Check(v)) break;
        for (size_t f = 0; f < t->n; f++) {
            PyObject *fv = PyDict_GetItemString(v, t->fields[f].name);
            if (fv == NULL) continue;
            PyObject *nv = pyshm_fix(t->fields[f].type, fv, depth + 1);
            if (nv == NULL || PyDict_SetItemString(v, t->fields[f].name, nv) != 0) {
                Py_XDECREF(nv);
                return NULL;
            }
            Py_DECREF(nv);
        }
        if (struct_factory == NULL) return Py_NewRef(v);
        return PyObject_CallFunction(struct_factory, "sO", t->name, v);
    }
    default:
        return Py_NewRef(v);
    }
    return PyErr_Format(pyshm_Error, "the result does not match its signature");
}

PyObject *pyshm_decode(const shmrpc_dyn_sig *sig, const void *body, size_t n, shmrpc_buf *json,
                       const char *what)
{
    shmrpc_buf_clear(json);
    if (shmrpc_dyn_decode_result(sig, body, n, json) != 0)
        return PyErr_Format(pyshm_Error, "%s: %s", what, shmrpc_errmsg());
    if (sig->result->kind == SHMRPC_DYN_VOID) Py_RETURN_NONE;
    PyObject *loaded =
        PyObject_CallFunction(json_loads, "s#", (const char *)json->data, (Py_ssize_t)json->len);
    if (loaded == NULL) return NULL;
    PyObject *r = pyshm_fix(sig->result, loaded, 0);
    Py_DECREF(loaded);
    return r;
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

/* --- a @msgpack result straight to Python values ------------------------------------------
 * The checks of the codec's from_mp (runtime/src/codec/dynamic_json.c), read with the runtime's
 * bounds-checked reader; values as the JSON path would give them (an f32 as the shortest
 * decimal that reads back as the same f32). Raises shmrpc.Error naming what failed. */

static PyObject *mp_fail(const shmrpc_mp_reader *r)
{
    return PyErr_Format(pyshm_Error, "result: %s", r->why ? r->why : "invalid");
}

static PyObject *f32_value(float f)
{
    char num[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(num, sizeof num, "%.*g", prec, (double)f);
        if (strtof(num, NULL) == f) break;
    }
    return PyFloat_FromDouble(strtod(num, NULL));
}

static const shmrpc_dyn_enumval *enum_by_value(const shmrpc_dyn_type *t, int64_t v)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->values[i].value == v) return &t->values[i];
    return NULL;
}

static bool is_signed(shmrpc_dyn_kind k)
{
    return k == SHMRPC_DYN_I8 || k == SHMRPC_DYN_I16 || k == SHMRPC_DYN_I32 || k == SHMRPC_DYN_I64;
}

static PyObject *from_mp(const shmrpc_dyn_type *t, shmrpc_mp_reader *r, int depth);
static PyObject *any_to_py(shmrpc_any a, int depth);

/* An integer, enum or string (a map's key too). */
static PyObject *scalar_from_mp(const shmrpc_dyn_type *t, shmrpc_mp_reader *r)
{
    static const int64_t smin[] = {[SHMRPC_DYN_I8] = INT8_MIN,
                                   [SHMRPC_DYN_I16] = INT16_MIN,
                                   [SHMRPC_DYN_I32] = INT32_MIN,
                                   [SHMRPC_DYN_I64] = INT64_MIN};
    static const uint64_t max[] = {
        [SHMRPC_DYN_I8] = INT8_MAX,    [SHMRPC_DYN_I16] = INT16_MAX, [SHMRPC_DYN_I32] = INT32_MAX,
        [SHMRPC_DYN_I64] = INT64_MAX,  [SHMRPC_DYN_U8] = UINT8_MAX,  [SHMRPC_DYN_U16] = UINT16_MAX,
        [SHMRPC_DYN_U32] = UINT32_MAX, [SHMRPC_DYN_U64] = UINT64_MAX};
    switch (t->kind) {
    case SHMRPC_DYN_STRING: {
        shmrpc_str v;
        if (shmrpc_mp_read_str(r, &v) != 0) return mp_fail(r);
        PyObject *o = PyUnicode_DecodeUTF8(v.ptr, (Py_ssize_t)v.len, NULL);
        if (o == NULL) {
            PyErr_Clear();
            return PyErr_Format(pyshm_Error, "result: string is not UTF-8");
        }
        return o;
    }
    case SHMRPC_DYN_ENUM: {
        int64_t v;
        if (shmrpc_mp_read_int(r, INT32_MIN, INT32_MAX, &v) != 0) return mp_fail(r);
        const shmrpc_dyn_enumval *e = enum_by_value(t, v);
        if (e == NULL)
            return PyErr_Format(pyshm_Error, "result: %lld is not a value of enum %s", (long long)v,
                                t->name);
        return PyUnicode_FromString(e->name);
    }
    case SHMRPC_DYN_I8:
    case SHMRPC_DYN_I16:
    case SHMRPC_DYN_I32:
    case SHMRPC_DYN_I64:
    case SHMRPC_DYN_U8:
    case SHMRPC_DYN_U16:
    case SHMRPC_DYN_U32:
    case SHMRPC_DYN_U64:
        if (is_signed(t->kind)) {
            int64_t v;
            if (shmrpc_mp_read_int(r, smin[t->kind], (int64_t)max[t->kind], &v) != 0)
                return mp_fail(r);
            return PyLong_FromLongLong(v);
        } else {
            uint64_t v;
            if (shmrpc_mp_read_uint(r, max[t->kind], &v) != 0) return mp_fail(r);
            return PyLong_FromUnsignedLongLong(v);
        }
    default:
        return PyErr_Format(pyshm_Error, "result: a %s cannot be read", kind_name(t));
    }
}

static PyObject *from_mp(const shmrpc_dyn_type *t, shmrpc_mp_reader *r, int depth)
{
    if (depth > MAX_DEPTH)
        return PyErr_Format(pyshm_Error, "result: nested more than %d deep", MAX_DEPTH);
    switch (t->kind) {
    case SHMRPC_DYN_VOID:
        if (shmrpc_mp_read_nil(r) != 0) return mp_fail(r);
        Py_RETURN_NONE;
    case SHMRPC_DYN_BOOL: {
        bool v;
        if (shmrpc_mp_read_bool(r, &v) != 0) return mp_fail(r);
        return PyBool_FromLong(v);
    }
    case SHMRPC_DYN_F32: {
        float f;
        if (shmrpc_mp_read_f32(r, &f) != 0) return mp_fail(r);
        return f32_value(f);
    }
    case SHMRPC_DYN_F64: {
        double d;
        if (shmrpc_mp_read_f64(r, &d) != 0) return mp_fail(r);
        return PyFloat_FromDouble(d);
    }
    case SHMRPC_DYN_BYTES: {
        shmrpc_bytes v;
        if (shmrpc_mp_read_bin(r, &v) != 0) return mp_fail(r);
        return PyBytes_FromStringAndSize((const char *)v.ptr, (Py_ssize_t)v.len);
    }
    case SHMRPC_DYN_OPT: {
        int nil = shmrpc_mp_try_nil(r);
        if (nil < 0) return mp_fail(r);
        if (nil) Py_RETURN_NONE;
        return from_mp(t->elem, r, depth);
    }
    case SHMRPC_DYN_LIST: {
        uint32_t n;
        if (shmrpc_mp_read_array_of(r, 1, &n) != 0) return mp_fail(r);
        PyObject *list = PyList_New(n);
        for (uint32_t i = 0; list != NULL && i < n; i++) {
            PyObject *e = from_mp(t->elem, r, depth + 1);
            if (e == NULL)
                Py_CLEAR(list);
            else
                PyList_SET_ITEM(list, i, e);
        }
        return list;
    }
    case SHMRPC_DYN_MAP: {
        uint32_t n;
        if (shmrpc_mp_read_map_of(r, 2, &n) != 0) return mp_fail(r);
        PyObject *d = PyDict_New();
        for (uint32_t i = 0; d != NULL && i < n; i++) {
            PyObject *k = scalar_from_mp(t->key, r);
            PyObject *v = k ? from_mp(t->elem, r, depth + 1) : NULL;
            if (v == NULL || PyDict_SetItem(d, k, v) != 0) Py_CLEAR(d);
            Py_XDECREF(k), Py_XDECREF(v);
        }
        return d;
    }
    case SHMRPC_DYN_STRUCT: {
        uint32_t n;
        if (shmrpc_mp_read_array(r, &n) != 0) return mp_fail(r);
        if (n != t->n)
            return PyErr_Format(pyshm_Error, "result: struct %s: expected %zu fields, got %u",
                                t->name, t->n, (unsigned)n);
        PyObject *d = PyDict_New();
        for (size_t i = 0; d != NULL && i < t->n; i++) {
            PyObject *v = from_mp(t->fields[i].type, r, depth + 1);
            if (v == NULL || PyDict_SetItemString(d, t->fields[i].name, v) != 0) Py_CLEAR(d);
            Py_XDECREF(v);
        }
        if (d == NULL || struct_factory == NULL) return d;
        PyObject *o = PyObject_CallFunction(struct_factory, "sO", t->name, d);
        Py_DECREF(d);
        return o;
    }
    case SHMRPC_DYN_ANY: {
        shmrpc_any a;
        if (shmrpc_mp_read_any(r, &a) != 0) return mp_fail(r);
        return any_to_py(a, 0);
    }
    default:
        return scalar_from_mp(t, r);
    }
}

/* A checked any as native values; keys of a map are scalars, so hashable. */
static PyObject *any_to_py(shmrpc_any a, int depth)
{
    if (depth > MAX_DEPTH)
        return PyErr_Format(pyshm_Error, "result: nested more than %d deep", MAX_DEPTH);
    shmrpc_any_iter it;
    shmrpc_any e, v;
    int rc;
    switch (shmrpc_any_kind_of(a)) {
    case SHMRPC_ANY_NULL:
        Py_RETURN_NONE;
    case SHMRPC_ANY_BOOL: {
        bool x = false;
        shmrpc_any_bool(a, &x);
        return PyBool_FromLong(x);
    }
    case SHMRPC_ANY_INT: {
        int64_t x;
        uint64_t u = 0;
        if (shmrpc_any_int(a, &x) == 0) return PyLong_FromLongLong(x);
        shmrpc_any_uint(a, &u);
        return PyLong_FromUnsignedLongLong(u);
    }
    case SHMRPC_ANY_FLOAT: {
        double d = 0;
        shmrpc_any_float(a, &d);
        return PyFloat_FromDouble(d);
    }
    case SHMRPC_ANY_STRING: {
        shmrpc_str s = {0};
        shmrpc_any_str(a, &s);
        return PyUnicode_DecodeUTF8(s.ptr, (Py_ssize_t)s.len, NULL);
    }
    case SHMRPC_ANY_BYTES: {
        shmrpc_bytes x = {0};
        shmrpc_any_bytes(a, &x);
        return PyBytes_FromStringAndSize((const char *)x.ptr, (Py_ssize_t)x.len);
    }
    case SHMRPC_ANY_LIST: {
        PyObject *list = PyList_New(0);
        if (list == NULL) return NULL;
        if (shmrpc_any_iter_init(&it, a) != 0) {
            Py_DECREF(list);
            break;
        }
        while ((rc = shmrpc_any_next(&it, &e)) == 1) {
            PyObject *x = any_to_py(e, depth + 1);
            if (x == NULL || PyList_Append(list, x) != 0) {
                Py_XDECREF(x);
                Py_DECREF(list);
                return NULL;
            }
            Py_DECREF(x);
        }
        if (rc == 0) return list;
        Py_DECREF(list);
        break;
    }
    case SHMRPC_ANY_MAP: {
        PyObject *d = PyDict_New();
        if (d == NULL) return NULL;
        if (shmrpc_any_iter_init(&it, a) != 0) {
            Py_DECREF(d);
            break;
        }
        while ((rc = shmrpc_any_next(&it, &e)) == 1 && (rc = shmrpc_any_next(&it, &v)) == 1) {
            PyObject *k = any_to_py(e, depth + 1);
            PyObject *x = k ? any_to_py(v, depth + 1) : NULL;
            int bad = x == NULL || PyDict_SetItem(d, k, x) != 0;
            Py_XDECREF(k), Py_XDECREF(x);
            if (bad) {
                Py_DECREF(d);
                return NULL;
            }
        }
        if (rc == 0) return d;
        Py_DECREF(d);
        break;
    }
    default:
        return PyErr_Format(pyshm_Error, "result: the bytes of an any are malformed");
    }
    if (PyErr_Occurred()) return NULL;
    return PyErr_Format(pyshm_Error, "result: %s", shmrpc_errmsg());
}

PyObject *pyshm_from_mp(const shmrpc_dyn_type *t, shmrpc_mp_reader *r)
{
    return from_mp(t, r, 0);
}

/* --- the client ------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD shmrpc_dyn *d; /* NULL when closed */
    char *addr;
    shmrpc_client_opts opts;
    uint8_t secret[SHMRPC_SECRET_MAX];
    unsigned forks;          /* fork_count when d was connected: in the process that did */
    uint64_t gen;            /* counts the d's this object had: the key of Methods' caches */
    char *tls[4];            /* tls_ca, tls_cert, tls_key, tls_server_name (opts points here) */
    PyThread_type_lock lock; /* one call at a time on d (dynamic.h) */
    shmrpc_buf out;          /* the result's JSON */
} ClientObject;

/* The forks this process is removed from its first (bumped in each child, at fork): the
 * test of "am I the process that connected", as getpid() is a syscall in glibc and costs
 * more than the rest of a call's checks together. */
static _Atomic unsigned fork_count;

static void on_fork_child(void)
{
    atomic_fetch_add_explicit(&fork_count, 1, memory_order_relaxed);
}

static inline unsigned forks_now(void)
{
    return atomic_load_explicit(&fork_count, memory_order_relaxed);
}

unsigned pyshm_forks(void)
{
    return forks_now();
}

/* Connects self->d anew (the GIL released meanwhile); raises on failure. */
static int client_open(ClientObject *self)
{
    shmrpc_dyn *d = NULL;
    int rc;
    char msg[512] = "";
    Py_BEGIN_ALLOW_THREADS;
    rc = shmrpc_dyn_new(&d, &self->opts);
    if (rc == 0) rc = shmrpc_dyn_connect(d, self->addr);
    if (rc != 0) snprintf(msg, sizeof msg, "%s", shmrpc_errmsg());
    Py_END_ALLOW_THREADS;
    if (rc != 0) {
        shmrpc_dyn_free(d);
        pyshm_raise_status(rc, self->addr, msg);
        return -1;
    }
    self->d = d;
    self->forks = forks_now();
    self->gen++;
    return 0;
}

static int Client_init(ClientObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {
        "address",  "timeout", "max_message_size", "secret_file", "tls", "tls_ca",
        "tls_cert", "tls_key", "tls_server_name",  "tls_verify",  NULL};
    const char *addr;
    PyObject *timeout = NULL, *secret_file = Py_None, *tls_verify = Py_None;
    PyObject *tls_text[4] = {Py_None, Py_None, Py_None, Py_None};
    Py_ssize_t max_msg = 0;
    int tls = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|$OnOpOOOOO:connect", kwlist, &addr, &timeout,
                                     &max_msg, &secret_file, &tls, &tls_text[0], &tls_text[1],
                                     &tls_text[2], &tls_text[3], &tls_verify))
        return -1;
    if (self->d != NULL || self->addr != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a client is initialised once");
        return -1;
    }
    shmrpc_client_opts_init(&self->opts);
    if (timeout == Py_None) {
        self->opts.timeout_ms = SHMRPC_TIMEOUT_INFINITE;
    } else if (timeout != NULL) {
        double s = PyFloat_AsDouble(timeout);
        if (s == -1.0 && PyErr_Occurred()) return -1;
        if (!(s > 0) || s > 2e9) {
            PyErr_SetString(PyExc_ValueError, "timeout is seconds above 0 (None: no limit)");
            return -1;
        }
        self->opts.timeout_ms = (int64_t)ceil(s * 1000);
    }
    if (max_msg < 0) {
        PyErr_SetString(PyExc_ValueError, "max_message_size is bytes, 0 for the default");
        return -1;
    }
    self->opts.max_msg_bytes = (size_t)max_msg;
    if (secret_file != Py_None) {
        PyObject *path = NULL;
        if (!PyUnicode_FSConverter(secret_file, &path)) return -1;
        int rc = shmrpc_secret_load(PyBytes_AS_STRING(path), self->secret, sizeof self->secret,
                                    &self->opts.tcp.secret_len);
        Py_DECREF(path);
        if (rc != 0) {
            pyshm_raise_status(rc, "secret_file", shmrpc_errmsg());
            return -1;
        }
        self->opts.tcp.secret = self->secret;
    }
    /* TLS (docs/wire.md): the files' names are kept, as the library reads the files at
     * every connect; any of them implies tls. */
    const char **tls_opt[4] = {&self->opts.tcp.tls_ca, &self->opts.tcp.tls_cert,
                               &self->opts.tcp.tls_key, &self->opts.tcp.tls_server_name};
    for (int i = 0; i < 4; i++) {
        if (tls_text[i] == Py_None) continue;
        PyObject *bytes = NULL;
        if (!PyUnicode_FSConverter(tls_text[i], &bytes)) return -1;
        self->tls[i] = strdup(PyBytes_AS_STRING(bytes));
        Py_DECREF(bytes);
        if (!self->tls[i]) {
            PyErr_NoMemory();
            return -1;
        }
        *tls_opt[i] = self->tls[i];
        tls = 1;
    }
    if (tls_verify != Py_None) {
        int v = PyObject_IsTrue(tls_verify);
        if (v < 0) return -1;
        self->opts.tcp.tls_verify = v ? SHMRPC_TLS_VERIFY_ON : SHMRPC_TLS_VERIFY_OFF;
        tls = 1;
    }
    if (tls) self->opts.tcp.tls = SHMRPC_TLS_ON;
    if ((self->addr = strdup(addr)) == NULL || (self->lock = PyThread_allocate_lock()) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return client_open(self);
}

static void Client_dealloc(ClientObject *self)
{
    /* A connection inherited over fork is only unmapped by free (client.h): safe here. */
    shmrpc_dyn_free(self->d);
    free(self->addr);
    for (int i = 0; i < 4; i++)
        free(self->tls[i]);
    if (self->lock) PyThread_free_lock(self->lock);
    shmrpc_buf_destroy(&self->out);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Client_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    (void)args, (void)kw;
    ClientObject *self = (ClientObject *)type->tp_alloc(type, 0);
    if (self != NULL) shmrpc_buf_init(&self->out);
    return (PyObject *)self;
}

/* Takes the client's lock, waiting without the GIL; a forked child first replaces the
 * lock it inherited (another thread of the parent may have held it) and its connection. */
static int client_enter(ClientObject *self)
{
    if (self->lock == NULL) {
        PyErr_SetString(pyshm_Unavailable, "the client is not initialised");
        return -1;
    }
    if (self->forks != forks_now()) {
        PyThread_type_lock fresh = PyThread_allocate_lock();
        if (fresh == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->lock = fresh; /* the inherited one may be held for ever: left as it is */
        if (self->d != NULL) {
            shmrpc_dyn_free(self->d);
            self->d = NULL;
            self->forks = forks_now();
            if (client_open(self) != 0) return -1;
        }
        self->forks = forks_now();
    }
    if (!PyThread_acquire_lock(self->lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS;
        PyThread_acquire_lock(self->lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS;
    }
    if (self->d == NULL) {
        PyThread_release_lock(self->lock);
        PyErr_SetString(pyshm_Unavailable, "the client is closed");
        return -1;
    }
    return 0;
}

/* The arguments of a call in parameter order, into out (NULL for one left out): the
 * positional ones (pos, npos), then those by name, either as a vectorcall passes them
 * (kwnames, their values after the positional ones in pos) or in a dict (kwdict). */
static int bind_args(const shmrpc_dyn_sig *sig, PyObject *const *pos, Py_ssize_t npos,
                     PyObject *kwnames, PyObject *kwdict, PyObject **out)
{
    if ((size_t)npos > sig->n_params) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zu arguments, %zd given", sig->method,
                     sig->n_params, npos);
        return -1;
    }
    for (size_t i = 0; i < sig->n_params; i++)
        out[i] = (Py_ssize_t)i < npos ? pos[i] : NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0, pos_in_dict = 0;
    for (Py_ssize_t j = 0;; j++) {
        PyObject *k, *v;
        if (kwnames != NULL) {
            if (j == nkw) break;
            k = PyTuple_GET_ITEM(kwnames, j);
            v = pos[npos + j];
        } else if (kwdict == NULL || !PyDict_Next(kwdict, &pos_in_dict, &k, &v)) {
            break;
        }
        size_t i = 0;
        while (PyUnicode_Check(k) && i < sig->n_params &&
               PyUnicode_CompareWithASCIIString(k, sig->params[i].name) != 0)
            i++;
        if (!PyUnicode_Check(k)) i = sig->n_params;
        if (i == sig->n_params) {
            PyErr_Format(PyExc_TypeError, "%s() has no parameter %R", sig->method, k);
            return -1;
        }
        if (out[i] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got argument '%s' twice", sig->method,
                         sig->params[i].name);
            return -1;
        }
        out[i] = v;
    }
    for (size_t i = 0; i < sig->n_params; i++)
        if (out[i] == NULL && sig->params[i].type->kind != SHMRPC_DYN_OPT) {
            PyErr_Format(PyExc_TypeError, "%s() is missing argument '%s'", sig->method,
                         sig->params[i].name);
            return -1;
        }
    return 0;
}

/* The JSON arguments (an object by parameter name) into req; raises on a bad value. */
static int encode_args(const shmrpc_dyn_sig *sig, PyObject **argv, shmrpc_buf *json)
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

/* The method called name of self's connection; raises AttributeError when there is none. */
static int find_method(ClientObject *self, const char *name, const shmrpc_method_info **m,
                       const shmrpc_dyn_sig **sig)
{
    int rc = shmrpc_dyn_method(self->d, name, m, sig);
    if (rc == 0) return 0;
    if (rc == SHMRPC_ENOENT)
        PyErr_Format(PyExc_AttributeError, "%s", shmrpc_errmsg());
    else
        pyshm_raise_status(rc, name, shmrpc_errmsg());
    return -1;
}

/* A call's arguments as a request of sig, checked against it and encoded into req (for
 * @msgpack straight to msgpack, unless via_codec asks for the codec's JSON path, which
 * tests compare it with). The arguments as bind_args takes them. -1 raised. */
static int build_request(ClientObject *self, const shmrpc_dyn_sig *sig, PyObject *const *pos,
                         Py_ssize_t npos, PyObject *kwnames, PyObject *kwdict, bool via_codec,
                         shmrpc_buf *req)
{
    PyObject *argv_small[16], **argv = argv_small;
    const char *name = sig->method;
    int status = -1, rc;
    if (sig->n_params > 16 && (argv = PyMem_Calloc(sig->n_params, sizeof *argv)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (bind_args(sig, pos, npos, kwnames, kwdict, argv) != 0) goto done;
    if (sig->encoding == SHMRPC_ENC_RAW) {
        /* @raw: the bytes as they are, no codec (its one parameter is bytes). */
        Py_buffer view;
        place here = {.field = sig->params[0].name};
        if (PyBytes_CheckExact(argv[0])) { /* the common case, without a buffer view */
            rc = shmrpc_buf_append(req, PyBytes_AS_STRING(argv[0]),
                                   (size_t)PyBytes_GET_SIZE(argv[0]));
        } else if (PyUnicode_Check(argv[0]) ||
                   PyObject_GetBuffer(argv[0], &view, PyBUF_SIMPLE) != 0) {
            PyErr_Clear();
            fail_at(PyExc_TypeError, &here, "expected bytes, got %s", Py_TYPE(argv[0])->tp_name);
            goto done;
        } else {
            rc = shmrpc_buf_append(req, view.buf, (size_t)view.len);
            PyBuffer_Release(&view);
        }
        if (rc != 0) {
            pyshm_raise_status(rc, name, "the request does not fit");
            goto done;
        }
    } else if (sig->encoding == SHMRPC_ENC_MSGPACK && !via_codec) {
        /* Straight to msgpack, as the codec would write it, without the JSON between. */
        msgpack_packer pk;
        msgpack_packer_init(&pk, req, shmrpc_buf_msgpack_write);
        msgpack_pack_array(&pk, sig->n_params);
        for (size_t i = 0; i < sig->n_params; i++) {
            place here = {.field = sig->params[i].name};
            if (enc(NULL, &pk, sig->params[i].type, argv[i] ? argv[i] : Py_None, &here, 0) != 0)
                goto done;
        }
        if (req->err != 0) {
            pyshm_raise_status(req->err, name, "the request does not fit");
            goto done;
        }
    } else {
        if (encode_args(sig, argv, &self->out) != 0) goto done;
        if (shmrpc_dyn_encode_args(sig, (const char *)self->out.data, self->out.len, req) != 0) {
            /* What the checks above let through and the codec refuses (a value of the
             * right type it cannot carry): still before anything was sent. */
            PyErr_Format(PyExc_ValueError, "%s(): %s", name, shmrpc_errmsg());
            goto done;
        }
    }
    status = 0;
done:
    if (argv != argv_small) PyMem_Free(argv);
    return status;
}

/* One call of m (sig its parsed signature) with these arguments, self's lock held (and
 * let go of here): the request built, sent and waited for without the GIL, and its
 * answer as a Python value. */
static PyObject *call_locked(ClientObject *self, const shmrpc_method_info *m,
                             const shmrpc_dyn_sig *sig, PyObject *const *pos, Py_ssize_t npos,
                             PyObject *kwnames, PyObject *kwdict)
{
    PyObject *result = NULL;
    const char *name = sig->method;
    shmrpc_client *c = shmrpc_dyn_client(self->d);
    int rc;
    if (build_request(self, sig, pos, npos, kwnames, kwdict, false, shmrpc_client_request(c)) != 0)
        goto done;
    shmrpc_bytes resp;
    char msg[1024];
    Py_BEGIN_ALLOW_THREADS;
    rc = shmrpc_client_call(c, m->id, &resp);
    if (rc != 0) snprintf(msg, sizeof msg, "%s", shmrpc_errmsg());
    Py_END_ALLOW_THREADS;
    if (rc != 0) {
        /* After a request went out, SHMRPC_EINVAL and the like are the server's answer
         * (a handler's error status with its message). */
        bool answered = rc == SHMRPC_EINVAL || rc == SHMRPC_EPERM || rc == SHMRPC_EBUSY;
        pyshm_raise_as(answered ? pyshm_HandlerError : NULL, rc, name, msg, true);
        goto done;
    }
    if (sig->encoding == SHMRPC_ENC_RAW) {
        result = PyBytes_FromStringAndSize((const char *)resp.ptr, (Py_ssize_t)resp.len);
        goto done;
    }
    if (sig->encoding == SHMRPC_ENC_MSGPACK) {
        shmrpc_mp_reader r;
        shmrpc_mp_reader_init(&r, resp.ptr, resp.len);
        result = from_mp(sig->result, &r, 0);
        if (result != NULL && shmrpc_mp_finish(&r) != 0) {
            Py_CLEAR(result);
            mp_fail(&r);
        }
        if (result == NULL && PyErr_ExceptionMatches(pyshm_Error)) {
            /* "add: result: ...", as the JSON path words it */
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_Format(pyshm_Error, "%s: %S", name, value);
            Py_XDECREF(type), Py_XDECREF(value), Py_XDECREF(tb);
        }
        goto done;
    }
    result = pyshm_decode(sig, resp.ptr, resp.len, &self->out, name);
done:
    PyThread_release_lock(self->lock);
    return result;
}

/* _call(name, args, kwargs): one call of the method called name. */
static PyObject *Client_call(ClientObject *self, PyObject *const *a, Py_ssize_t na)
{
    if (na != 3 || !PyUnicode_Check(a[0]) || !PyTuple_Check(a[1]) ||
        (a[2] != Py_None && !PyDict_Check(a[2]))) {
        PyErr_SetString(PyExc_TypeError, "_call(name, args: tuple, kwargs: dict)");
        return NULL;
    }
    const char *name = PyUnicode_AsUTF8(a[0]);
    if (name == NULL || client_enter(self) != 0) return NULL;
    const shmrpc_method_info *m;
    const shmrpc_dyn_sig *sig;
    if (find_method(self, name, &m, &sig) != 0) {
        PyThread_release_lock(self->lock);
        return NULL;
    }
    return call_locked(self, m, sig, &PyTuple_GET_ITEM(a[1], 0), PyTuple_GET_SIZE(a[1]), NULL,
                       a[2] == Py_None ? NULL : a[2]);
}

/* _request(name, args, kwargs, via_codec): the request body a call would send, not sent. */
static PyObject *Client_request(ClientObject *self, PyObject *const *a, Py_ssize_t na)
{
    if (na != 4 || !PyUnicode_Check(a[0]) || !PyTuple_Check(a[1]) ||
        (a[2] != Py_None && !PyDict_Check(a[2]))) {
        PyErr_SetString(PyExc_TypeError, "_request(name, args: tuple, kwargs: dict, via_codec)");
        return NULL;
    }
    const char *name = PyUnicode_AsUTF8(a[0]);
    if (name == NULL || client_enter(self) != 0) return NULL;
    const shmrpc_method_info *m;
    const shmrpc_dyn_sig *sig;
    shmrpc_buf req;
    shmrpc_buf_init(&req);
    PyObject *r = NULL;
    if (find_method(self, name, &m, &sig) == 0 &&
        build_request(self, sig, &PyTuple_GET_ITEM(a[1], 0), PyTuple_GET_SIZE(a[1]), NULL,
                      a[2] == Py_None ? NULL : a[2], PyObject_IsTrue(a[3]) == 1, &req) == 0)
        r = PyBytes_FromStringAndSize((const char *)req.data, (Py_ssize_t)req.len);
    shmrpc_buf_destroy(&req);
    PyThread_release_lock(self->lock);
    return r;
}

/* The table: a list of (name, signature) in the server's order. */
static PyObject *Client_methods(ClientObject *self, void *unused)
{
    (void)unused;
    if (client_enter(self) != 0) return NULL;
    const shmrpc_service_info *info = shmrpc_dyn_info(self->d);
    PyObject *list = PyList_New(0);
    for (uint32_t i = 0; list != NULL && info != NULL && i < info->n_methods; i++) {
        PyObject *t = Py_BuildValue("(ss)", info->methods[i].name, info->methods[i].signature);
        if (t == NULL || PyList_Append(list, t) != 0) Py_CLEAR(list);
        Py_XDECREF(t);
    }
    PyThread_release_lock(self->lock);
    return list;
}

static PyObject *Client_service(ClientObject *self, void *unused)
{
    (void)unused;
    if (client_enter(self) != 0) return NULL;
    const shmrpc_service_info *info = shmrpc_dyn_info(self->d);
    PyObject *r = info ? PyUnicode_FromString(info->name) : Py_NewRef(Py_None);
    PyThread_release_lock(self->lock);
    return r;
}

static PyObject *Client_address(ClientObject *self, void *unused)
{
    (void)unused;
    return self->addr ? PyUnicode_FromString(self->addr) : Py_NewRef(Py_None);
}

static PyObject *Client_closed(ClientObject *self, void *unused)
{
    (void)unused;
    return PyBool_FromLong(self->d == NULL);
}

static PyObject *Client_close(ClientObject *self, PyObject *unused)
{
    (void)unused;
    if (self->lock == NULL || self->d == NULL) Py_RETURN_NONE;
    if (self->forks == forks_now()) {
        Py_BEGIN_ALLOW_THREADS;
        PyThread_acquire_lock(self->lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS;
        shmrpc_dyn_free(self->d);
        self->d = NULL;
        PyThread_release_lock(self->lock);
    } else {
        shmrpc_dyn_free(self->d); /* the parent's lock means nothing here */
        self->d = NULL;
    }
    Py_RETURN_NONE;
}

/* --- a method of a connection: what c.add is ------------------------------------------
 * A callable with the vectorcall protocol, so that c.add(40, 2) reaches the call with its
 * arguments as they are on the interpreter's stack: no tuple, dict or Python frame per
 * call. It keeps the method's table entry and parsed signature for the connection it was
 * looked up on (its gen), looking them up again only when the connection was made anew
 * (after a fork). Attributes (__signature__, __doc__) live in its __dict__: shmrpc/
 * __init__.py sets them for help(). */

typedef struct {
    PyObject_HEAD ClientObject *conn;
    PyObject *name;              /* str */
    const shmrpc_method_info *m; /* of conn->d when gen == conn->gen */
    const shmrpc_dyn_sig *sig;
    uint64_t gen; /* 0: nothing looked up yet */
    PyObject *dict;
    vectorcallfunc vectorcall;
} MethodObject;

static PyObject *Method_vectorcall(MethodObject *self, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames)
{
    ClientObject *conn = self->conn;
    if (client_enter(conn) != 0) return NULL;
    if (self->gen != conn->gen) {
        const char *name = PyUnicode_AsUTF8(self->name);
        if (name == NULL || find_method(conn, name, &self->m, &self->sig) != 0) {
            self->gen = 0;
            PyThread_release_lock(conn->lock);
            return NULL;
        }
        self->gen = conn->gen;
    }
    return call_locked(conn, self->m, self->sig, args, PyVectorcall_NARGS(nargsf), kwnames, NULL);
}

static int Method_traverse(MethodObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->conn);
    Py_VISIT(self->dict);
    return 0;
}

static int Method_clear(MethodObject *self)
{
    Py_CLEAR(self->conn);
    Py_CLEAR(self->dict);
    return 0;
}

static void Method_dealloc(MethodObject *self)
{
    PyObject_GC_UnTrack(self);
    Method_clear(self);
    Py_CLEAR(self->name);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Bound to nothing: a method of a connection is taken from the client as it is. Having
 * __get__ makes it a routine to inspect and pydoc, which then show its __signature__. */
static PyObject *Method_get(PyObject *self, PyObject *obj, PyObject *type)
{
    (void)obj, (void)type;
    return Py_NewRef(self);
}

static PyObject *Method_repr(MethodObject *self)
{
    return PyUnicode_FromFormat("<shmrpc method %U>", self->name);
}

static PyMemberDef Method_members[] = {
    {"__name__", T_OBJECT, offsetof(MethodObject, name), READONLY, "The method's name."},
    {"__qualname__", T_OBJECT, offsetof(MethodObject, name), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Method_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject MethodType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmrpc._shmrpc.Method",
    .tp_basicsize = sizeof(MethodObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "A method of a connection (c.add): calling it calls the server.",
    .tp_dealloc = (destructor)Method_dealloc,
    .tp_traverse = (traverseproc)Method_traverse,
    .tp_clear = (inquiry)Method_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(MethodObject, vectorcall),
    .tp_dictoffset = offsetof(MethodObject, dict),
    .tp_descr_get = Method_get,
    .tp_repr = (reprfunc)Method_repr,
    .tp_members = Method_members,
    .tp_getset = Method_getset,
};

/* _method(name): the method called name, as a callable (raises AttributeError when the
 * server has none). */
static PyObject *Client_method(ClientObject *self, PyObject *name)
{
    if (!PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_TypeError, "_method(name: str)");
        return NULL;
    }
    const char *s = PyUnicode_AsUTF8(name);
    if (s == NULL || client_enter(self) != 0) return NULL;
    const shmrpc_method_info *m;
    const shmrpc_dyn_sig *sig;
    int rc = find_method(self, s, &m, &sig);
    PyThread_release_lock(self->lock);
    if (rc != 0) return NULL;
    MethodObject *o = PyObject_GC_New(MethodObject, &MethodType);
    if (o == NULL) return NULL;
    o->conn = (ClientObject *)Py_NewRef(self);
    o->name = Py_NewRef(name);
    o->m = m;
    o->sig = sig;
    o->gen = self->gen;
    o->dict = NULL;
    o->vectorcall = (vectorcallfunc)Method_vectorcall;
    PyObject_GC_Track(o);
    return (PyObject *)o;
}

static PyMethodDef Client_methods_def[] = {
    {"_call", (PyCFunction)(void (*)(void))Client_call, METH_FASTCALL,
     "_call(name, args, kwargs): calls the method called name."},
    {"_method", (PyCFunction)Client_method, METH_O,
     "_method(name): the method called name, a callable (c.add is one)."},
    {"_request", (PyCFunction)(void (*)(void))Client_request, METH_FASTCALL,
     "_request(name, args, kwargs, via_codec): the request body, not sent (for tests)."},
    {"close", (PyCFunction)Client_close, METH_NOARGS, "Closes the connection."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Client_getset[] = {
    {"methods", (getter)Client_methods, NULL, "The server's method table: (name, signature) pairs.",
     NULL},
    {"service", (getter)Client_service, NULL, "The service's name in its .svc.", NULL},
    {"address", (getter)Client_address, NULL, "The address connected to.", NULL},
    {"closed", (getter)Client_closed, NULL, "True after close().", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ClientType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmrpc._shmrpc.Connection",
    .tp_basicsize = sizeof(ClientObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "A connection to one shmrpc service (see shmrpc.connect).",
    .tp_new = Client_new,
    .tp_init = (initproc)Client_init,
    .tp_dealloc = (destructor)Client_dealloc,
    .tp_methods = Client_methods_def,
    .tp_getset = Client_getset,
};

/* _set_struct_factory(f): f(name, dict) makes a struct's value (shmrpc.Struct). */
static PyObject *set_struct_factory(PyObject *mod, PyObject *f)
{
    (void)mod;
    Py_XSETREF(struct_factory, Py_NewRef(f));
    Py_RETURN_NONE;
}

/* _param_names(signature): what help() shows of a method's parameters, their names and
 * whether each may be left out, read by the library's own parser. */
static PyObject *param_names(PyObject *mod, PyObject *text)
{
    (void)mod;
    const char *s = PyUnicode_AsUTF8(text);
    if (s == NULL) return NULL;
    shmrpc_dyn *d;
    const shmrpc_dyn_sig *sig;
    if (shmrpc_dyn_new(&d, NULL) != 0) return PyErr_NoMemory();
    PyObject *r = NULL;
    if (shmrpc_dyn_sig_parse(d, s, &sig) != 0) {
        PyErr_Format(PyExc_ValueError, "%s", shmrpc_errmsg());
    } else if ((r = PyList_New(0)) != NULL) {
        for (size_t i = 0; i < sig->n_params; i++) {
            PyObject *t =
                Py_BuildValue("(sO)", sig->params[i].name,
                              sig->params[i].type->kind == SHMRPC_DYN_OPT ? Py_True : Py_False);
            if (t == NULL || PyList_Append(r, t) != 0) Py_CLEAR(r);
            Py_XDECREF(t);
            if (r == NULL) break;
        }
    }
    shmrpc_dyn_free(d);
    return r;
}

static PyMethodDef module_methods[] = {
    {"_set_struct_factory", set_struct_factory, METH_O, NULL},
    {"_param_names", param_names, METH_O,
     "_param_names(signature): [(name, optional)] of a canonical signature's parameters."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "shmrpc._shmrpc",
    .m_doc = "The C part of shmrpc: connections and conversions.",
    .m_size = -1,
    .m_methods = module_methods,
};

static PyObject *new_exc(PyObject *m, const char *name, PyObject *base, const char *doc)
{
    char full[64];
    snprintf(full, sizeof full, "shmrpc.%s", name);
    PyObject *e = PyErr_NewExceptionWithDoc(full, doc, base, NULL);
    if (e == NULL || PyModule_AddObjectRef(m, name, e) != 0) return NULL;
    return e;
}

PyMODINIT_FUNC PyInit__shmrpc(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    pthread_atfork(NULL, NULL, on_fork_child);
    if (PyType_Ready(&ClientType) != 0 || PyType_Ready(&MethodType) != 0 ||
        PyModule_AddObjectRef(m, "Connection", (PyObject *)&ClientType) != 0 ||
        PyModule_AddObjectRef(m, "Method", (PyObject *)&MethodType) != 0)
        goto fail;
    if (!(pyshm_Error =
              new_exc(m, "Error", NULL,
                      "A failed shmrpc call: .status, .status_name, .message, .may_have_run.")) ||
        !(pyshm_Timeout =
              new_exc(m, "Timeout", pyshm_Error, "The call's deadline passed; it may have run.")) ||
        !(pyshm_Unavailable = new_exc(m, "Unavailable", pyshm_Error,
                                      "Nobody serves the address, or the client is closed.")) ||
        !(pyshm_Mismatch = new_exc(m, "Mismatch", pyshm_Error,
                                   "Client and server disagree on the service or its version.")) ||
        !(pyshm_HandlerError = new_exc(m, "HandlerError", pyshm_Error,
                                       "The server refused the call: .message is the server's.")) ||
        !(pyshm_PeerDied = new_exc(m, "PeerDied", pyshm_Error,
                                   "The server died during the call: .may_have_run is True.")))
        goto fail;
    PyObject *json = PyImport_ImportModule("json"), *binascii = PyImport_ImportModule("binascii");
    if (json) json_loads = PyObject_GetAttrString(json, "loads");
    if (binascii) a2b_base64 = PyObject_GetAttrString(binascii, "a2b_base64");
    Py_XDECREF(json), Py_XDECREF(binascii);
    if (json_loads == NULL || a2b_base64 == NULL || pyshm_store_init(m) != 0 ||
        pyshm_serve_init(m) != 0 || pyshm_send_init(m) != 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
