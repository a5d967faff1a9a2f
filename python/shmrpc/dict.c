/* SPDX-License-Identifier: MIT */
/* shmrpc._shmrpc._DictCore: the C half of shmrpc.Dict (dict.py), UltraDict's API over the
 * shared map (shmrpc/map.h). What every get and put goes through is here, so that d[k]
 * costs one key lookup, one map call and the serializer's loads or dumps, with no Python
 * frame of ours between: keys serialized once and cached (exact int, str and bytes, whose
 * equal values serialize to equal bytes), values copied out of a view and loaded. Every use
 * of the map handle holds the GIL, which so is the handle's lock; a write takes the map's
 * lock first, without the GIL, so that a thread of this process inside `with d.lock:`
 * is waited for instead of deadlocking against it. */
#include "pyshmrpc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <shmrpc/lock.h>
#include <shmrpc/map.h>
#include <shmrpc/status.h>

/* A value that is a Dict of its own (recurse=True, or a Dict stored as a value): these
 * bytes, then JSON naming it (dict.py writes and reads it). No serializer's output begins
 * with a NUL and this text (pickle's begins with 0x80, marshal's with a type letter, JSON
 * is text). */
#define MARKER "\0shmrpc.Dict\0"
#define MARKER_LEN (sizeof MARKER - 1)

/* Keys of exact int, str and bytes serialized at most once per this many distinct keys. */
#define KEY_CACHE_MAX 4096

/* Tuples in a key nested deeper than this are refused. */
#define KEY_DEPTH_MAX 64

typedef struct {
    PyObject_HEAD shmrpc_map *m; /* NULL when closed */
    char *name;
    PyObject *kdumps;    /* key -> bytes (or str) */
    PyObject *dumps;     /* value -> bytes (or str) */
    PyObject *dumps_arg; /* a second argument of dumps (pickle's protocol), or NULL */
    PyObject *loads;
    PyObject *kcache; /* {key: bytes} for exact int, str and bytes */
    int recurse;      /* a dict stored becomes a Dict of its own */
    int check_keys;   /* a key must come back from loads equal to itself */
    uint64_t max_value;
    /* Threads waiting for the map's lock without the GIL (pyshm_lock_wait): a close while
     * there are any marks the Dict closing, and the last of them unmaps it. */
    int users;
    _Atomic bool closing;
} DictCore;

static PyTypeObject DictCoreType;
static PyObject *as_bytes(PyObject *r);

/* --- errors --------------------------------------------------------------------------- */

/* The exception being raised again, of the same type when its type takes a message, with
 * "LABEL: its message", the original as its cause (label is a str, borrowed). */
void pyshm_relabel(PyObject *label)
{
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (v == NULL || label == NULL) {
        PyErr_Restore(t, v, tb);
        return;
    }
    if (tb != NULL) PyException_SetTraceback(v, tb);
    /* Not ours to relabel: interrupts, and memory running out. */
    if (!PyErr_GivenExceptionMatches(t, PyExc_Exception) ||
        PyErr_GivenExceptionMatches(t, PyExc_MemoryError)) {
        PyErr_Restore(t, v, tb);
        return;
    }
    PyObject *msg = PyUnicode_FromFormat("%U: %S", label, v);
    PyObject *nv = msg ? PyObject_CallOneArg(t, msg) : NULL;
    if (nv == NULL || !PyExceptionInstance_Check(nv)) {
        PyErr_Clear();
        Py_XDECREF(nv);
        nv = msg ? PyObject_CallOneArg(PyExc_TypeError, msg) : NULL;
    }
    Py_XDECREF(msg);
    if (nv == NULL) {
        PyErr_Clear();
        PyErr_Restore(t, v, tb);
        return;
    }
    PyException_SetCause(nv, Py_NewRef(v));
    PyException_SetContext(nv, v);
    PyErr_SetObject((PyObject *)Py_TYPE(nv), nv);
    Py_DECREF(nv);
    Py_DECREF(t);
    Py_XDECREF(tb);
}

/* pyshm_relabel naming the Dict and the key: "shmrpc.Dict 'NAME': WHAT of key K". */
static void name_error(const char *what, DictCore *self, PyObject *key)
{
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyObject *label =
        PyUnicode_FromFormat("shmrpc.Dict '%s': %s of key %.200R", self->name, what, key);
    PyErr_Restore(t, v, tb);
    if (label == NULL) return; /* that error raised instead */
    pyshm_relabel(label);
    Py_DECREF(label);
}

int pyshm_serializer(PyObject *ser, PyObject **dumps, PyObject **dumps_arg, PyObject **loads)
{
    *dumps = *dumps_arg = *loads = NULL;
    if ((*dumps = PyObject_GetAttrString(ser, "dumps")) == NULL ||
        (*loads = PyObject_GetAttrString(ser, "loads")) == NULL || !PyCallable_Check(*dumps) ||
        !PyCallable_Check(*loads)) {
        Py_CLEAR(*dumps);
        Py_CLEAR(*loads);
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError,
                     "serializer must have callable dumps() and loads() (pickle, marshal, json "
                     "...), not %.200R",
                     ser);
        return -1;
    }
    /* pickle: the protocol pinned, so that interpreters of other defaults write alike. */
    if (PyModule_Check(ser) &&
        strcmp(PyModule_GetName(ser) ? PyModule_GetName(ser) : "", "pickle") == 0) {
        PyErr_Clear();
        *dumps_arg = PyLong_FromLong(PYSHM_PICKLE_PROTOCOL);
    }
    return 0;
}

PyObject *pyshm_dumps(PyObject *dumps, PyObject *dumps_arg, PyObject *v)
{
    PyObject *args[2] = {v, dumps_arg};
    return as_bytes(PyObject_Vectorcall(dumps, args, dumps_arg ? 2 : 1, NULL));
}

static int closed(DictCore *self)
{
    if (self->m != NULL && !atomic_load(&self->closing)) return 0;
    PyErr_Format(pyshm_Unavailable, "shmrpc.Dict '%s' is closed",
                 self->name ? self->name : "(not open)");
    return -1;
}

/* --- keys and values ------------------------------------------------------------------ */

/* A serializer's output as bytes (a str, as json's, in UTF-8); steals r. */
static PyObject *as_bytes(PyObject *r)
{
    if (r == NULL || PyBytes_CheckExact(r)) return r;
    PyObject *b = NULL;
    if (PyUnicode_Check(r))
        b = PyUnicode_AsUTF8String(r);
    else if (PyObject_CheckBuffer(r))
        b = PyBytes_FromObject(r);
    else
        PyErr_Format(PyExc_TypeError, "the serializer's dumps gave %s, not bytes or str",
                     Py_TYPE(r)->tp_name);
    Py_DECREF(r);
    return b;
}

/* Whether k can be a key: hashable (as a dict's), and holding no set, whose order (and so
 * whose serialized bytes) differs between processes. 0, or -1 raised. */
static int check_key(PyObject *k, int depth)
{
    if (depth > KEY_DEPTH_MAX) {
        PyErr_Format(PyExc_ValueError, "a key of tuples nested deeper than %d", KEY_DEPTH_MAX);
        return -1;
    }
    if (PyObject_Hash(k) == -1) return -1;
    if (PyAnySet_Check(k)) {
        PyErr_Format(PyExc_TypeError,
                     "a %s cannot be a key of a shmrpc.Dict: its order, and so its serialized "
                     "bytes, differs from process to process",
                     Py_TYPE(k)->tp_name);
        return -1;
    }
    if (PyTuple_Check(k))
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(k); i++)
            if (check_key(PyTuple_GET_ITEM(k, i), depth + 1) != 0) return -1;
    return 0;
}

/* Whether key k, serialized to b, comes back from loads as a key equal to it: else every
 * listing of the Dict (keys, items, repr, ==, close) would fail in every process. 0, or -1
 * raised. */
static int check_round_trip(DictCore *self, PyObject *k, PyObject *b)
{
    PyObject *back = PyObject_CallOneArg(self->loads, b);
    if (back == NULL) {
        name_error("the serializer's loads", self, k);
        return -1;
    }
    int eq =
        PyObject_Hash(back) == -1 ? (PyErr_Clear(), 0) : PyObject_RichCompareBool(back, k, Py_EQ);
    if (eq == 0)
        PyErr_Format(PyExc_TypeError,
                     "shmrpc.Dict '%s': key %.200R comes back from the serializer as %.200R, "
                     "which is not the same key (a key must come back equal and hashable)",
                     self->name, k, back);
    Py_DECREF(back);
    return eq == 1 ? 0 : -1;
}

/* The key's serialized bytes (a new reference), or NULL raised. */
static PyObject *key_bytes(DictCore *self, PyObject *k)
{
    PyTypeObject *t = Py_TYPE(k);
    bool cacheable = t == &PyLong_Type || t == &PyUnicode_Type || t == &PyBytes_Type;
    if (cacheable) {
        PyObject *b = PyDict_GetItemWithError(self->kcache, k);
        if (b != NULL) return Py_NewRef(b);
        if (PyErr_Occurred()) return NULL;
    } else if (check_key(k, 0) != 0) {
        return NULL;
    }
    PyObject *b = as_bytes(PyObject_CallOneArg(self->kdumps, k));
    if (b == NULL) {
        name_error("the serialization", self, k);
        return NULL;
    }
    if (self->check_keys && check_round_trip(self, k, b) != 0) {
        Py_DECREF(b);
        return NULL;
    }
    if ((uint64_t)PyBytes_GET_SIZE(b) > SHMRPC_MAP_KEY_MAX) {
        PyErr_Format(PyExc_ValueError,
                     "shmrpc.Dict '%s': key %.200R serializes to %zd bytes, more than %u",
                     self->name, k, PyBytes_GET_SIZE(b), (unsigned)SHMRPC_MAP_KEY_MAX);
        Py_DECREF(b);
        return NULL;
    }
    if (cacheable) {
        if (PyDict_GET_SIZE(self->kcache) >= KEY_CACHE_MAX) PyDict_Clear(self->kcache);
        if (PyDict_SetItem(self->kcache, k, b) != 0) Py_CLEAR(b);
    }
    return b;
}

/* The stored bytes of value v of key k (a new reference), or NULL raised. A Dict, or a
 * dict when recurse is on, is dict.py's to store (_store_special). */
static PyObject *value_bytes(DictCore *self, PyObject *k, PyObject *v)
{
    PyObject *b;
    if (PyObject_TypeCheck(v, &DictCoreType) || (self->recurse && PyDict_Check(v))) {
        b = PyObject_CallMethod((PyObject *)self, "_store_special", "OO", k, v);
        if (b != NULL && !PyBytes_Check(b)) {
            Py_DECREF(b);
            PyErr_SetString(PyExc_TypeError, "_store_special gave no bytes");
            return NULL;
        }
        if (b == NULL) return NULL;
    } else {
        b = pyshm_dumps(self->dumps, self->dumps_arg, v);
        if (b == NULL) {
            name_error("the serialization of the value", self, k);
            return NULL;
        }
    }
    if ((uint64_t)PyBytes_GET_SIZE(b) > self->max_value) {
        PyErr_Format(PyExc_ValueError,
                     "shmrpc.Dict '%s': the value of key %.200R serializes to %zd bytes, more "
                     "than the %llu a value may have (docs/python.md, \"Dict\")",
                     self->name, k, PyBytes_GET_SIZE(b), (unsigned long long)self->max_value);
        Py_DECREF(b);
        return NULL;
    }
    return b;
}

/* The value of key k from its stored bytes b (borrowed), or NULL raised. */
static PyObject *value_of(DictCore *self, PyObject *k, PyObject *b)
{
    const char *p = PyBytes_AS_STRING(b);
    if ((size_t)PyBytes_GET_SIZE(b) >= MARKER_LEN && memcmp(p, MARKER, MARKER_LEN) == 0) {
        PyObject *v = PyObject_CallMethod((PyObject *)self, "_load_special", "O", b);
        if (v == NULL) name_error("the Dict stored as the value", self, k);
        return v;
    }
    PyObject *v = PyObject_CallOneArg(self->loads, b);
    if (v == NULL) name_error("the stored value does not load: the value", self, k);
    return v;
}

/* The stored bytes of key k (its serialized bytes kb), a new reference; NULL with nothing
 * raised when absent. */
static PyObject *stored(DictCore *self, PyObject *kb)
{
    shmrpc_map_view view;
    int rc =
        shmrpc_map_get_view(self->m, PyBytes_AS_STRING(kb), (size_t)PyBytes_GET_SIZE(kb), &view);
    if (rc == SHMRPC_ENOENT) return NULL;
    if (rc != 0) return pyshm_raise_status(rc, self->name, shmrpc_errmsg());
    /* A copy: the view ends at the handle's next call, which loads may make. */
    return PyBytes_FromStringAndSize(view.data, (Py_ssize_t)view.len);
}

/* d[k]; *missing (nothing raised) when absent. */
static PyObject *lookup(DictCore *self, PyObject *k, bool *missing)
{
    *missing = false;
    if (closed(self) != 0) return NULL;
    PyObject *kb = key_bytes(self, k);
    if (kb == NULL) return NULL;
    PyObject *b = stored(self, kb);
    Py_DECREF(kb);
    if (b == NULL) {
        *missing = !PyErr_Occurred();
        return NULL;
    }
    PyObject *v = value_of(self, k, b);
    Py_DECREF(b);
    return v;
}

/* --- writes --------------------------------------------------------------------------- */

/* Waits for the map's lock (seconds, negative: for ever) without the GIL; the lock's
 * status, or SHMRPC_ECLOSED (msg says why) when the Dict was closed meanwhile. */
static int wait_lock(DictCore *self, double seconds, char *msg, size_t cap)
{
    int rc =
        pyshm_lock_wait(shmrpc_map_lock(self->m), seconds, &self->users, &self->closing, msg, cap);
    if (rc == SHMRPC_ECLOSED && self->users == 0) {
        shmrpc_map_close(self->m);
        self->m = NULL;
        atomic_store(&self->closing, false);
    }
    return rc;
}

/* Takes the map's lock for a write unless this thread holds it: 1 taken (release it with
 * write_end), 0 held already, -1 raised. The wait lets go of the GIL. */
static int write_begin(DictCore *self)
{
    shmrpc_lock *l = shmrpc_map_lock(self->m);
    if (shmrpc_lock_is_mine(l)) return 0;
    char msg[512] = "";
    int rc = shmrpc_lock_try(l);
    if (rc == SHMRPC_EBUSY) rc = wait_lock(self, -1.0, msg, sizeof msg);
    /* A dead holder's half-done write: the map repairs it at this write (docs/map.md). */
    if (rc == 0 || rc == SHMRPC_EOWNERDEAD) return 1;
    pyshm_raise_status(rc, self->name, *msg ? msg : shmrpc_errmsg());
    return -1;
}

static void write_end(DictCore *self, int took)
{
    if (took == 1) shmrpc_lock_release(shmrpc_map_lock(self->m));
}

/* A write's status raised, naming the key. */
static void raise_write(DictCore *self, PyObject *k, int rc)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", shmrpc_errmsg());
    PyObject *what = PyUnicode_FromFormat("shmrpc.Dict '%s': key %.200R", self->name, k);
    const char *w = what ? PyUnicode_AsUTF8(what) : NULL;
    if (w != NULL) pyshm_raise_status(rc, w, msg);
    Py_XDECREF(what);
}

static int Dict_ass_subscript(DictCore *self, PyObject *k, PyObject *v)
{
    if (closed(self) != 0) return -1;
    PyObject *kb = key_bytes(self, k);
    PyObject *vb = kb && v ? value_bytes(self, k, v) : NULL;
    int r = -1;
    if (kb != NULL && (v == NULL || vb != NULL)) {
        int took = write_begin(self);
        if (took >= 0) {
            const char *kp = PyBytes_AS_STRING(kb);
            size_t kn = (size_t)PyBytes_GET_SIZE(kb);
            int rc = v == NULL ? shmrpc_map_remove(self->m, kp, kn)
                               : shmrpc_map_put(self->m, kp, kn, PyBytes_AS_STRING(vb),
                                                (size_t)PyBytes_GET_SIZE(vb));
            write_end(self, took);
            if (rc == SHMRPC_ENOENT && v == NULL)
                PyErr_SetObject(PyExc_KeyError, k);
            else if (rc != 0)
                raise_write(self, k, rc);
            else
                r = 0;
        }
    }
    Py_XDECREF(kb);
    Py_XDECREF(vb);
    return r;
}

static PyObject *Dict_subscript(DictCore *self, PyObject *k)
{
    bool missing;
    PyObject *r = lookup(self, k, &missing);
    if (missing) PyErr_SetObject(PyExc_KeyError, k);
    return r;
}

static PyObject *Dict_get(DictCore *self, PyObject *const *a, Py_ssize_t n)
{
    if (n < 1 || n > 2) {
        PyErr_SetString(PyExc_TypeError, "get(key, default=None)");
        return NULL;
    }
    bool missing;
    PyObject *r = lookup(self, a[0], &missing);
    if (missing) return Py_NewRef(n == 2 ? a[1] : Py_None);
    return r;
}

static int Dict_contains(DictCore *self, PyObject *k)
{
    if (closed(self) != 0) return -1;
    PyObject *kb = key_bytes(self, k);
    if (kb == NULL) return -1;
    shmrpc_map_view view;
    int rc =
        shmrpc_map_get_view(self->m, PyBytes_AS_STRING(kb), (size_t)PyBytes_GET_SIZE(kb), &view);
    Py_DECREF(kb);
    if (rc == 0) return 1;
    if (rc == SHMRPC_ENOENT) return 0;
    pyshm_raise_status(rc, self->name, shmrpc_errmsg());
    return -1;
}

static Py_ssize_t Dict_len(DictCore *self)
{
    if (closed(self) != 0) return -1;
    uint64_t n = 0;
    int rc = shmrpc_map_size(self->m, &n);
    if (rc != 0) {
        pyshm_raise_status(rc, self->name, shmrpc_errmsg());
        return -1;
    }
    return (Py_ssize_t)n;
}

/* --- snapshots ------------------------------------------------------------------------ */

typedef struct {
    DictCore *self;
    PyObject *list;
    int what; /* 0 keys, 1 values, 2 (key, value) pairs */
} snap_arg;

static int collect(void *arg, const void *key, size_t klen, const void *value, size_t vlen)
{
    snap_arg *a = arg;
    PyObject *kb = PyBytes_FromStringAndSize(key, (Py_ssize_t)klen);
    PyObject *k = kb ? PyObject_CallOneArg(a->self->loads, kb) : NULL;
    if (k == NULL && kb != NULL) name_error("a stored key does not load: key bytes", a->self, kb);
    Py_XDECREF(kb);
    if (k == NULL) return 1;
    PyObject *item = k, *v = NULL;
    if (a->what != 0) {
        PyObject *vb = PyBytes_FromStringAndSize(value, (Py_ssize_t)vlen);
        v = vb ? value_of(a->self, k, vb) : NULL;
        Py_XDECREF(vb);
        item = v == NULL ? NULL : a->what == 1 ? Py_NewRef(v) : PyTuple_Pack(2, k, v);
        Py_DECREF(k);
        Py_XDECREF(v);
    }
    int rc = item != NULL && PyList_Append(a->list, item) == 0 ? 0 : 1;
    Py_XDECREF(item);
    return rc;
}

/* _snapshot(what): keys (0), values (1) or (key, value) pairs (2) of one consistent
 * snapshot of the map, as a list. */
static PyObject *Dict_snapshot(DictCore *self, PyObject *what)
{
    long w = PyLong_AsLong(what);
    if (w == -1 && PyErr_Occurred()) return NULL;
    if (closed(self) != 0) return NULL;
    snap_arg a = {self, PyList_New(0), (int)w};
    int rc = a.list ? shmrpc_map_iterate(self->m, collect, &a) : 1;
    if (rc != 0) {
        if (!PyErr_Occurred()) pyshm_raise_status(rc, self->name, shmrpc_errmsg());
        Py_CLEAR(a.list);
    }
    return a.list;
}

/* --- compare-and-swap, and the rest dict.py builds on ----------------------------------- */

/* _get_raw(key): the stored bytes of key, or None. */
static PyObject *Dict_get_raw(DictCore *self, PyObject *k)
{
    if (closed(self) != 0) return NULL;
    PyObject *kb = key_bytes(self, k);
    if (kb == NULL) return NULL;
    PyObject *b = stored(self, kb);
    Py_DECREF(kb);
    if (b == NULL && !PyErr_Occurred()) return Py_NewRef(Py_None);
    return b;
}

/* _decode(key, raw): the value of key from its stored bytes. */
static PyObject *Dict_decode(DictCore *self, PyObject *const *a, Py_ssize_t n)
{
    if (n != 2 || !PyBytes_Check(a[1])) {
        PyErr_SetString(PyExc_TypeError, "_decode(key, raw bytes)");
        return NULL;
    }
    return value_of(self, a[0], a[1]);
}

/* _cas_raw(key, old, value): stores value if the key's stored bytes are still old (None:
 * the key is absent); True when it did, False when another write came first. */
static PyObject *Dict_cas_raw(DictCore *self, PyObject *const *a, Py_ssize_t n)
{
    if (n != 3 || (a[1] != Py_None && !PyBytes_Check(a[1]))) {
        PyErr_SetString(PyExc_TypeError, "_cas_raw(key, old bytes or None, value)");
        return NULL;
    }
    if (closed(self) != 0) return NULL;
    PyObject *k = a[0], *old = a[1];
    PyObject *kb = key_bytes(self, k);
    PyObject *vb = kb ? value_bytes(self, k, a[2]) : NULL;
    PyObject *r = NULL;
    if (vb != NULL) {
        int took = write_begin(self);
        if (took >= 0) {
            const char *kp = PyBytes_AS_STRING(kb), *vp = PyBytes_AS_STRING(vb);
            size_t kn = (size_t)PyBytes_GET_SIZE(kb), vn = (size_t)PyBytes_GET_SIZE(vb);
            int rc = old == Py_None ? shmrpc_map_put_if_absent(self->m, kp, kn, vp, vn)
                                    : shmrpc_map_cas(self->m, kp, kn, PyBytes_AS_STRING(old),
                                                     (size_t)PyBytes_GET_SIZE(old), vp, vn);
            write_end(self, took);
            if (rc == 0)
                r = Py_NewRef(Py_True);
            else if (rc == SHMRPC_EBUSY || rc == SHMRPC_ENOENT)
                r = Py_NewRef(Py_False);
            else
                raise_write(self, k, rc);
        }
    }
    Py_XDECREF(kb);
    Py_XDECREF(vb);
    return r;
}

static PyObject *Dict_clear(DictCore *self, PyObject *unused)
{
    (void)unused;
    if (closed(self) != 0) return NULL;
    int took = write_begin(self);
    if (took < 0) return NULL;
    int rc = shmrpc_map_clear(self->m);
    write_end(self, took);
    if (rc != 0) return pyshm_raise_status(rc, self->name, shmrpc_errmsg());
    Py_RETURN_NONE;
}

/* _setup(kdumps, dumps, dumps_arg, loads, recurse, max_value, check_keys) */
static PyObject *Dict_setup(DictCore *self, PyObject *args)
{
    PyObject *kdumps, *dumps, *dumps_arg, *loads;
    int recurse, check_keys;
    unsigned long long max_value;
    if (!PyArg_ParseTuple(args, "OOOOpKp:_setup", &kdumps, &dumps, &dumps_arg, &loads, &recurse,
                          &max_value, &check_keys))
        return NULL;
    if (!PyCallable_Check(kdumps) || !PyCallable_Check(dumps) || !PyCallable_Check(loads)) {
        PyErr_SetString(PyExc_TypeError, "the serializer's dumps and loads must be callable");
        return NULL;
    }
    Py_XSETREF(self->kdumps, Py_NewRef(kdumps));
    Py_XSETREF(self->dumps, Py_NewRef(dumps));
    Py_XSETREF(self->dumps_arg, dumps_arg == Py_None ? NULL : Py_NewRef(dumps_arg));
    Py_XSETREF(self->loads, Py_NewRef(loads));
    if (self->kcache == NULL && (self->kcache = PyDict_New()) == NULL) return NULL;
    PyDict_Clear(self->kcache);
    self->recurse = recurse;
    self->check_keys = check_keys;
    self->max_value = max_value < SHMRPC_MAP_VALUE_MAX ? max_value : SHMRPC_MAP_VALUE_MAX;
    Py_RETURN_NONE;
}

/* _open(name, create, max_bytes): UltraDict's create (True: a new map, refused with
 * SHMRPC_EBUSY when one exists; False: an existing one, Unavailable when missing; None:
 * either); True when this call created the map. max_bytes bounds a created one's entry
 * space (0: the library's default). */
static PyObject *Dict_open(DictCore *self, PyObject *args)
{
    const char *name;
    PyObject *create;
    unsigned long long max_bytes;
    if (!PyArg_ParseTuple(args, "sOK:_open", &name, &create, &max_bytes)) return NULL;
    if (self->m != NULL || self->name != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Dict is opened once");
        return NULL;
    }
    if ((self->name = strdup(name)) == NULL) return PyErr_NoMemory();
    shmrpc_map_opts o;
    shmrpc_map_opts_init(&o);
    if (max_bytes) o.max_bytes = max_bytes;
    int rc = SHMRPC_ENOENT;
    bool made = false;
    char msg[512] = "";
    Py_BEGIN_ALLOW_THREADS;
    /* Removed between the try to create and the try to connect: try both again. */
    for (int tries = 0; tries < 100; tries++) {
        if (create != Py_False) {
            o.mode = SHMRPC_MAP_CREATE_NEW_EXCLUSIVE;
            rc = shmrpc_map_open(&self->m, name, &o);
            if (rc == 0) made = true;
            if (rc != SHMRPC_EBUSY || create == Py_True) break;
        }
        o.mode = SHMRPC_MAP_CONNECT_TO_EXISTING;
        rc = shmrpc_map_open(&self->m, name, &o);
        if (rc == SHMRPC_ECUT && create == Py_None) {
            /* Half-made by a creator that died (or cut): the library's connect-or-create
             * removes that file, and only that one, and makes the map anew; this process
             * made it if it is the creator the map names (the dead one was another). */
            o.mode = SHMRPC_MAP_CONNECT_OR_CREATE;
            rc = shmrpc_map_open(&self->m, name, &o);
            shmrpc_map_info info;
            made = rc == 0 && shmrpc_map_get_info(self->m, &info) == 0 && info.creator == getpid();
            break;
        }
        if (rc != SHMRPC_ENOENT || create == Py_False) break;
    }
    if (rc != 0) snprintf(msg, sizeof msg, "%s", shmrpc_errmsg());
    Py_END_ALLOW_THREADS;
    if (rc != 0) {
        self->m = NULL;
        pyshm_raise_as(rc == SHMRPC_ENOENT ? pyshm_Unavailable : NULL, rc, self->name, msg, false);
        free(self->name); /* another name may be tried */
        self->name = NULL;
        return NULL;
    }
    return PyBool_FromLong(made);
}

static PyObject *Dict_close(DictCore *self, PyObject *unused)
{
    (void)unused;
    if (self->m == NULL || atomic_load(&self->closing)) Py_RETURN_NONE;
    /* Closed inside `with d.lock:`: the lock freed, or it would stay held by a live thread
     * that has no handle left to free it with, and every writer would wait for ever. */
    shmrpc_lock *l = shmrpc_map_lock(self->m);
    if (shmrpc_lock_is_mine(l)) shmrpc_lock_release(l);
    if (self->users > 0) {
        atomic_store(&self->closing, true); /* the last waiter unmaps it */
    } else {
        shmrpc_map_close(self->m);
        self->m = NULL;
    }
    Py_RETURN_NONE;
}

/* --- the map's lock (dict.py's Lock: UltraDict's semantics on top) -------------------- */

/* _lock_acquire(timeout): 0 taken, 1 taken from a holder that died, 2 busy (timeout 0),
 * 3 timed out; None waits for ever (a dead holder is taken over within the lock's check,
 * docs/lock.md). The GIL is let go of while it waits. */
static PyObject *Dict_lock_acquire(DictCore *self, PyObject *timeout)
{
    if (closed(self) != 0) return NULL;
    double s = -1.0;
    if (timeout != Py_None) {
        s = PyFloat_AsDouble(timeout);
        if (s == -1.0 && PyErr_Occurred()) return NULL;
        if (!(s >= 0)) {
            PyErr_SetString(PyExc_ValueError, "timeout is seconds, 0 or more (None: no limit)");
            return NULL;
        }
    }
    char msg[512] = "";
    int rc = shmrpc_lock_try(shmrpc_map_lock(self->m));
    if (rc == SHMRPC_EBUSY && s != 0) rc = wait_lock(self, s, msg, sizeof msg);
    switch (rc) {
    case 0:
        return PyLong_FromLong(0);
    case SHMRPC_EOWNERDEAD:
        return PyLong_FromLong(1);
    case SHMRPC_EBUSY:
        return PyLong_FromLong(2);
    case SHMRPC_ETIMEDOUT:
        return PyLong_FromLong(3);
    default:
        return pyshm_raise_status(rc, self->name, *msg ? msg : shmrpc_errmsg());
    }
}

static PyObject *Dict_lock_release(DictCore *self, PyObject *unused)
{
    (void)unused;
    if (closed(self) != 0) return NULL;
    int rc = shmrpc_lock_release(shmrpc_map_lock(self->m));
    if (rc != 0) return pyshm_raise_status(rc, self->name, shmrpc_errmsg());
    Py_RETURN_NONE;
}

static PyObject *Dict_lock_is_mine(DictCore *self, PyObject *unused)
{
    (void)unused;
    if (closed(self) != 0) return NULL;
    return PyBool_FromLong(shmrpc_lock_is_mine(shmrpc_map_lock(self->m)));
}

/* _lock_blocking_pid(): the process holding the lock (0: free), a snapshot. */
static PyObject *Dict_lock_blocking_pid(DictCore *self, PyObject *unused)
{
    (void)unused;
    if (closed(self) != 0) return NULL;
    pid_t pid = 0;
    shmrpc_lock_blocking_pid(shmrpc_map_lock(self->m), &pid); /* ENOENT: the dead owner's */
    return PyLong_FromLong((long)pid);
}

/* _info(): the map's info and its lock's counters, for status(). */
static PyObject *Dict_info(DictCore *self, PyObject *unused)
{
    (void)unused;
    if (closed(self) != 0) return NULL;
    shmrpc_map_info i;
    shmrpc_lock_stats ls;
    int rc = shmrpc_map_get_info(self->m, &i);
    if (rc == 0) rc = shmrpc_lock_get_stats(shmrpc_map_lock(self->m), &ls);
    if (rc != 0) return pyshm_raise_status(rc, self->name, shmrpc_errmsg());
    return Py_BuildValue(
        "{sKsKsKsKsKsKsKsKsKsKsKsKsKsisKsKsKsKsK}", "generation", (unsigned long long)i.generation,
        "count", (unsigned long long)i.count, "slots", (unsigned long long)i.slots, "tombstones",
        (unsigned long long)i.tombstones, "bytes", (unsigned long long)i.bytes, "used",
        (unsigned long long)i.used, "live", (unsigned long long)i.live, "changes",
        (unsigned long long)i.changes, "writes", (unsigned long long)i.writes, "growths",
        (unsigned long long)i.growths, "repairs", (unsigned long long)i.repairs, "lock_waits",
        (unsigned long long)i.lock_waits, "reads", (unsigned long long)i.reads, "creator",
        (int)i.creator, "lock_acquisitions", (unsigned long long)ls.acquisitions, "lock_contended",
        (unsigned long long)ls.contended, "lock_sleeps", (unsigned long long)ls.sleeps,
        "lock_owner_deaths", (unsigned long long)ls.owner_deaths, "lock_steals",
        (unsigned long long)ls.steals);
}

static void Dict_dealloc(DictCore *self)
{
    shmrpc_map_close(self->m);
    free(self->name);
    Py_XDECREF(self->kdumps);
    Py_XDECREF(self->dumps);
    Py_XDECREF(self->dumps_arg);
    Py_XDECREF(self->loads);
    Py_XDECREF(self->kcache);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Dict_methods[] = {
    {"get", (PyCFunction)(void (*)(void))Dict_get, METH_FASTCALL,
     "get(key, default=None): the key's value, or default when absent."},
    {"_snapshot", (PyCFunction)Dict_snapshot, METH_O, NULL},
    {"_get_raw", (PyCFunction)Dict_get_raw, METH_O, NULL},
    {"_decode", (PyCFunction)(void (*)(void))Dict_decode, METH_FASTCALL, NULL},
    {"_cas_raw", (PyCFunction)(void (*)(void))Dict_cas_raw, METH_FASTCALL, NULL},
    {"_clear", (PyCFunction)Dict_clear, METH_NOARGS, NULL},
    {"_setup", (PyCFunction)Dict_setup, METH_VARARGS, NULL},
    {"_open", (PyCFunction)Dict_open, METH_VARARGS, NULL},
    {"_close", (PyCFunction)Dict_close, METH_NOARGS, NULL},
    {"_lock_acquire", (PyCFunction)Dict_lock_acquire, METH_O, NULL},
    {"_lock_release", (PyCFunction)Dict_lock_release, METH_NOARGS, NULL},
    {"_lock_is_mine", (PyCFunction)Dict_lock_is_mine, METH_NOARGS, NULL},
    {"_lock_blocking_pid", (PyCFunction)Dict_lock_blocking_pid, METH_NOARGS, NULL},
    {"_info", (PyCFunction)Dict_info, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMappingMethods Dict_mapping = {
    .mp_length = (lenfunc)Dict_len,
    .mp_subscript = (binaryfunc)Dict_subscript,
    .mp_ass_subscript = (objobjargproc)Dict_ass_subscript,
};

static PySequenceMethods Dict_sequence = {
    .sq_contains = (objobjproc)Dict_contains,
};

static PyTypeObject DictCoreType = {
    PYSHM_TYPE("shmrpc._shmrpc._DictCore", DictCore, Py_TPFLAGS_BASETYPE,
               "The C half of shmrpc.Dict (dict.py): gets, puts and the map's lock."),
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)Dict_dealloc,
    .tp_methods = Dict_methods,
    .tp_as_mapping = &Dict_mapping,
    .tp_as_sequence = &Dict_sequence,
};

int pyshm_dict_init(PyObject *module)
{
    if (PyType_Ready(&DictCoreType) != 0 ||
        PyModule_AddObjectRef(module, "_DictCore", (PyObject *)&DictCoreType) != 0)
        return -1;
    PyObject *marker = PyBytes_FromStringAndSize(MARKER, (Py_ssize_t)MARKER_LEN);
    int rc = marker ? PyModule_AddObject(module, "_DICT_MARKER", marker) : -1;
    if (rc != 0) Py_XDECREF(marker);
    return rc;
}
