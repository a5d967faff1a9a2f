/* SPDX-License-Identifier: MIT */
/* The place inside a value a conversion failed at, and the messages that name it
 * ("argument 'points'[1].x: expected an int (i32), got str"), for the encoder, the decoder
 * and the client alike. */
#include "pyshmrpc.h"

#include <stdarg.h>

/* v as a message shows it (new reference): a number as its own type writes it, since a
 * subclass's __repr__ may raise, and an int too long for str() (sys.get_int_max_str_digits)
 * by its size; anything else by repr, or by its type's name when repr fails. NULL only when
 * memory ran out. */
PyObject *pyshm_shown(PyObject *v)
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
        PyObject *k = pyshm_shown(p->key);
        s = k ? PyUnicode_FromFormat("[%U]", k) : NULL;
        Py_XDECREF(k);
    } else
        s = PyUnicode_FromFormat("[%zd]", p->index);
    if (s != NULL) PyList_Append(parts, s);
    Py_XDECREF(s);
}

/* Raises cls with "argument 'points'[1].x: WHY". Returns -1. */
int pyshm_fail_at(PyObject *cls, const place *p, const char *fmt, ...)
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

/* Raises cls with "PLACE: V WHY", v as pyshm_shown() shows it. Returns -1. */
int pyshm_fail_shown(PyObject *cls, const place *p, PyObject *v, const char *why, ...)
{
    PyObject *sv = pyshm_shown(v);
    if (sv == NULL) return -1;
    va_list ap;
    va_start(ap, why);
    PyObject *w = PyUnicode_FromFormatV(why, ap);
    va_end(ap);
    int rc = w ? pyshm_fail_at(cls, p, "%U %U", sv, w) : -1;
    Py_DECREF(sv);
    Py_XDECREF(w);
    return rc;
}

const char *pyshm_kind_name(const shmrpc_dyn_type *t)
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
