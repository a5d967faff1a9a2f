/* SPDX-License-Identifier: MIT */
/* Bodies of a signature's result type back to Python values: through the codec's JSON and
 * json.loads (@json), or read straight from msgpack (@msgpack), with a struct made by
 * shmrpc.Struct's factory. A call's result, a handler's arguments, a queue's or map's
 * values all come back through it. */
#include "pyshmrpc.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmrpc/any.h>
#include <shmrpc/codec.h>
#include <shmrpc/dynamic.h>
#include <shmrpc/status.h>

static PyObject *json_loads, *a2b_base64, *struct_factory; /* struct_factory: set by __init__ */

/* --- the codec's JSON result to Python values ------------------------------------------- */

static PyObject *pyshm_fix(const shmrpc_dyn_type *t, PyObject *v, int depth);

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
    if (depth > PYSHM_MAX_DEPTH + 8) return PyErr_Format(pyshm_Error, "result nested too deep");
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

static PyObject *pyshm_fix(const shmrpc_dyn_type *t, PyObject *v, int depth)
{
    if (depth > PYSHM_MAX_DEPTH + 8) return PyErr_Format(pyshm_Error, "result nested too deep");
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
    if (shmrpc_dyn_is_int(t->kind)) {
        if (shmrpc_dyn_is_signed(t->kind)) {
            int64_t v;
            if (shmrpc_mp_read_int(r, smin[t->kind], (int64_t)max[t->kind], &v) != 0)
                return mp_fail(r);
            return PyLong_FromLongLong(v);
        } else {
            uint64_t v;
            if (shmrpc_mp_read_uint(r, max[t->kind], &v) != 0) return mp_fail(r);
            return PyLong_FromUnsignedLongLong(v);
        }
    }
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
    default:
        return PyErr_Format(pyshm_Error, "result: a %s cannot be read", pyshm_kind_name(t));
    }
}

static PyObject *from_mp(const shmrpc_dyn_type *t, shmrpc_mp_reader *r, int depth)
{
    if (depth > PYSHM_MAX_DEPTH)
        return PyErr_Format(pyshm_Error, "result: nested more than %d deep", PYSHM_MAX_DEPTH);
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
        /* An older peer's struct may lack trailing optional fields (None), a newer one's
         * have more (skipped): docs/svc-language.md, "Compatible evolution". */
        size_t req = t->n;
        while (req > 0 && t->fields[req - 1].type->kind == SHMRPC_DYN_OPT)
            req--;
        if (n < req)
            return PyErr_Format(pyshm_Error, "result: struct %s: expected %s%zu fields, got %u",
                                t->name, req < t->n ? "at least " : "", req, (unsigned)n);
        PyObject *d = PyDict_New();
        for (size_t i = 0; d != NULL && i < t->n; i++) {
            PyObject *v = i >= n ? Py_NewRef(Py_None) : from_mp(t->fields[i].type, r, depth + 1);
            if (v == NULL || PyDict_SetItemString(d, t->fields[i].name, v) != 0) Py_CLEAR(d);
            Py_XDECREF(v);
        }
        if (d != NULL && n > t->n && shmrpc_mp_skip(r, n - (uint32_t)t->n) != 0) {
            Py_DECREF(d);
            return mp_fail(r);
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
    if (depth > PYSHM_MAX_DEPTH)
        return PyErr_Format(pyshm_Error, "result: nested more than %d deep", PYSHM_MAX_DEPTH);
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

PyObject *pyshm_decode_mp(const shmrpc_dyn_sig *sig, const void *body, size_t n, const char *what)
{
    shmrpc_mp_reader r;
    shmrpc_mp_reader_init(&r, body, n);
    PyObject *v = from_mp(sig->result, &r, 0);
    if (v != NULL && shmrpc_mp_finish(&r) != 0) {
        Py_CLEAR(v);
        mp_fail(&r);
    }
    if (v == NULL && PyErr_ExceptionMatches(pyshm_Error)) {
        /* "NAME: result: ...", as the JSON path words it */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_Format(pyshm_Error, "%s: %S", what, value);
        Py_XDECREF(type), Py_XDECREF(value), Py_XDECREF(tb);
    }
    return v;
}

/* _set_struct_factory(f): f(name, dict) makes a struct's value (shmrpc.Struct). */
PyObject *pyshm_set_struct_factory(PyObject *mod, PyObject *f)
{
    (void)mod;
    Py_XSETREF(struct_factory, Py_NewRef(f));
    Py_RETURN_NONE;
}

int pyshm_decode_init(void)
{
    PyObject *json = PyImport_ImportModule("json"), *binascii = PyImport_ImportModule("binascii");
    if (json) json_loads = PyObject_GetAttrString(json, "loads");
    if (binascii) a2b_base64 = PyObject_GetAttrString(binascii, "a2b_base64");
    Py_XDECREF(json), Py_XDECREF(binascii);
    return json_loads == NULL || a2b_base64 == NULL ? -1 : 0;
}
