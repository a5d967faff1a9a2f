/* SPDX-License-Identifier: MIT */
/* shmrpc.HybridLock: speedysvc's HybridLock(sem_loc, mode, initial_value, permissions) over
 * the library's shared lock (shmrpc/lock.h, docs/lock.md): its four modes, timeouts in
 * fractional seconds, and a holder's death handed on to the next locker. */
#include "pyshmrpc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <shmrpc/lock.h>
#include <shmrpc/status.h>

static PyObject *NoSuchSemaphore, *SemaphoreExists;

typedef struct {
    PyObject_HEAD shmrpc_lock *l; /* NULL when closed */
    char *name;
    bool created;    /* this open created the lock */
    bool owner_died; /* the last lock() took it from a holder that had died */
    /* Threads inside a lock(), which waits without the GIL on l (the GIL guards the count):
     * a close while there are any only marks the lock closing, and the last of them closes
     * it, so that close never unmaps what another thread is waiting on. */
    int users;
    _Atomic bool closing; /* read by waiting threads without the GIL */
} HybridLock;

/* A wait is cut into slices this long, so that a close from another thread ends it. */
#define SLICE_S 0.05

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int pyshm_lock_wait(shmrpc_lock *l, double seconds, int *users, const _Atomic bool *closing,
                    char *msg, size_t cap)
{
    int rc;
    ++*users;
    Py_BEGIN_ALLOW_THREADS;
    bool forever = seconds < 0 || isinf(seconds);
    double end = forever ? 0 : now_s() + seconds;
    for (;;) {
        double left = forever ? SLICE_S : end - now_s();
        if (left < 0) left = 0;
        double slice = left < SLICE_S ? left : SLICE_S;
        rc = shmrpc_lock_acquire_secs(l, slice);
        if (rc != 0) snprintf(msg, cap, "%s", shmrpc_errmsg());
        if (rc != SHMRPC_ETIMEDOUT || (!forever && slice == left) || atomic_load(closing)) break;
    }
    Py_END_ALLOW_THREADS;
    --*users;
    if (atomic_load(closing)) {
        if (rc == 0 || rc == SHMRPC_EOWNERDEAD) shmrpc_lock_release(l); /* for no one now */
        rc = SHMRPC_ECLOSED;
        snprintf(msg, cap, "closed while this waited for its lock");
    }
    return rc;
}

/* sem_loc's text (str or bytes, borrowed from it), or NULL raised. */
static const char *lock_name(PyObject *loc)
{
    if (PyBytes_Check(loc)) return PyBytes_AS_STRING(loc);
    const char *name = PyUnicode_Check(loc) ? PyUnicode_AsUTF8(loc) : NULL;
    if (name == NULL && !PyErr_Occurred())
        PyErr_Format(PyExc_TypeError, "sem_loc is the lock's name, a str or bytes, not %s",
                     Py_TYPE(loc)->tp_name);
    return name;
}

static int HybridLock_init(HybridLock *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"sem_loc", "mode", "initial_value", "permissions", NULL};
    PyObject *loc;
    int mode = SHMRPC_LOCK_CONNECT_OR_CREATE, initial = 1, perms = 0600;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|iii:HybridLock", kwlist, &loc, &mode, &initial,
                                     &perms))
        return -1;
    if (self->l != NULL || self->name != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a HybridLock is opened once");
        return -1;
    }
    const char *name = lock_name(loc);
    if (name == NULL) return -1;
    if (mode < SHMRPC_LOCK_CONNECT_OR_CREATE || mode > SHMRPC_LOCK_CREATE_NEW_EXCLUSIVE) {
        PyErr_Format(PyExc_ValueError,
                     "mode %d is none of CONNECT_OR_CREATE, CONNECT_TO_EXISTING, "
                     "CREATE_NEW_OVERWRITE, CREATE_NEW_EXCLUSIVE",
                     mode);
        return -1;
    }
    if (initial != 0 && initial != 1) {
        PyErr_Format(PyExc_ValueError, "initial_value is 1 (free) or 0 (held), not %d", initial);
        return -1;
    }
    if ((self->name = strdup(name)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    shmrpc_lock_opts o;
    shmrpc_lock_opts_init(&o);
    o.mode = (shmrpc_lock_mode)mode;
    o.initially_locked = initial == 0;
    o.perms = (mode_t)perms;
    int rc;
    char msg[512] = "";
    Py_BEGIN_ALLOW_THREADS;
    rc = shmrpc_lock_open(&self->l, name, &o);
    if (rc != 0) snprintf(msg, sizeof msg, "%s", shmrpc_errmsg());
    Py_END_ALLOW_THREADS;
    if (rc != 0) {
        self->l = NULL;
        PyObject *cls = rc == SHMRPC_ENOENT   ? NoSuchSemaphore
                        : rc == SHMRPC_EBUSY  ? SemaphoreExists
                        : rc == SHMRPC_EINVAL ? PyExc_ValueError
                                              : NULL;
        if (cls == PyExc_ValueError)
            PyErr_Format(cls, "HybridLock %s: %s", name, msg);
        else
            pyshm_raise_as(cls, rc, name, msg, false);
        return -1;
    }
    /* Held at once only when this open created it held (lock.h). */
    self->created = initial == 0 ? shmrpc_lock_is_mine(self->l) : false;
    return 0;
}

static int check_open(HybridLock *self)
{
    if (self->l != NULL && !atomic_load(&self->closing)) return 0;
    PyErr_SetString(pyshm_Unavailable, "the HybridLock is closed");
    return -1;
}

/* lock(timeout=None): seconds, fractions too; None or a negative number waits for ever. */
static PyObject *HybridLock_lock(HybridLock *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"timeout", NULL};
    PyObject *t = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:lock", kwlist, &t)) return NULL;
    if (check_open(self) != 0) return NULL;
    double s = -1.0;
    if (t != Py_None) {
        s = PyFloat_AsDouble(t);
        if (s == -1.0 && PyErr_Occurred()) return NULL;
        if (isnan(s)) {
            PyErr_SetString(PyExc_ValueError, "timeout is seconds (None: no limit), not NaN");
            return NULL;
        }
        if (s < 0) s = -1.0;
    }
    char msg[512] = "";
    int rc = pyshm_lock_wait(self->l, s, &self->users, &self->closing, msg, sizeof msg);
    if (rc == SHMRPC_ECLOSED && self->users == 0) {
        shmrpc_lock_close(self->l);
        self->l = NULL;
        atomic_store(&self->closing, false);
    }
    if (rc == 0 || rc == SHMRPC_EOWNERDEAD) {
        self->owner_died = rc == SHMRPC_EOWNERDEAD;
        Py_RETURN_TRUE;
    }
    return pyshm_raise_status(rc, self->name, msg);
}

static PyObject *HybridLock_unlock(HybridLock *self, PyObject *unused)
{
    (void)unused;
    if (check_open(self) != 0) return NULL;
    int rc = shmrpc_lock_release(self->l);
    if (rc != 0) return pyshm_raise_status(rc, self->name, shmrpc_errmsg());
    Py_RETURN_NONE;
}

static PyObject *HybridLock_enter(HybridLock *self, PyObject *unused)
{
    (void)unused;
    PyObject *none = PyTuple_New(0);
    PyObject *r = none ? HybridLock_lock(self, none, NULL) : NULL;
    Py_XDECREF(none);
    if (r == NULL) return NULL;
    Py_DECREF(r);
    return Py_NewRef(self);
}

static PyObject *HybridLock_exit(HybridLock *self, PyObject *args)
{
    (void)args;
    return HybridLock_unlock(self, NULL);
}

static PyObject *HybridLock_is_mine(HybridLock *self, PyObject *unused)
{
    (void)unused;
    if (check_open(self) != 0) return NULL;
    return PyBool_FromLong(shmrpc_lock_is_mine(self->l));
}

static PyObject *HybridLock_blocking_pid(HybridLock *self, void *unused)
{
    (void)unused;
    if (check_open(self) != 0) return NULL;
    pid_t pid = 0;
    shmrpc_lock_blocking_pid(self->l, &pid);
    return PyLong_FromLong((long)pid);
}

static PyObject *HybridLock_close(HybridLock *self, PyObject *unused)
{
    (void)unused;
    if (self->users > 0) {
        atomic_store(&self->closing, true); /* the last lock() under way closes it */
    } else {
        shmrpc_lock_close(self->l);
        self->l = NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *HybridLock_destroy(HybridLock *self, PyObject *unused)
{
    (void)unused;
    int rc = self->name ? shmrpc_lock_unlink(self->name) : 0;
    if (rc != 0 && rc != SHMRPC_ENOENT) return pyshm_raise_status(rc, self->name, shmrpc_errmsg());
    Py_RETURN_NONE;
}

static PyObject *HybridLock_unlink(PyObject *cls, PyObject *name)
{
    (void)cls;
    const char *s = lock_name(name);
    if (s == NULL) return NULL;
    int rc = shmrpc_lock_unlink(s);
    if (rc != 0) return pyshm_raise_status(rc, s, shmrpc_errmsg());
    Py_RETURN_NONE;
}

static PyObject *HybridLock_get_name(HybridLock *self, void *unused)
{
    (void)unused;
    return self->name ? PyUnicode_FromString(self->name) : Py_NewRef(Py_None);
}

static PyObject *HybridLock_get_owner_died(HybridLock *self, void *unused)
{
    (void)unused;
    return PyBool_FromLong(self->owner_died);
}

static PyObject *HybridLock_get_created(HybridLock *self, void *unused)
{
    (void)unused;
    return PyBool_FromLong(self->created);
}

static void HybridLock_dealloc(HybridLock *self)
{
    shmrpc_lock_close(self->l);
    free(self->name);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef HybridLock_methods[] = {
    {"lock", (PyCFunction)(void (*)(void))HybridLock_lock, METH_VARARGS | METH_KEYWORDS,
     "lock(timeout=None): takes the lock, waiting up to timeout seconds (fractions too; "
     "None or negative: for ever); True, or shmrpc.Timeout. A lock whose holder died is "
     "taken over, and owner_died says so."},
    {"unlock", (PyCFunction)HybridLock_unlock, METH_NOARGS,
     "unlock(): frees the lock; shmrpc.Error (SHMRPC_EPERM) when this thread does not hold it."},
    {"is_mine", (PyCFunction)HybridLock_is_mine, METH_NOARGS,
     "is_mine(): whether this thread holds the lock."},
    {"close", (PyCFunction)HybridLock_close, METH_NOARGS, "Unmaps the lock (does not unlock)."},
    {"destroy", (PyCFunction)HybridLock_destroy, METH_NOARGS,
     "destroy(): removes the lock's name (handles open keep it)."},
    {"unlink", (PyCFunction)HybridLock_unlink, METH_O | METH_STATIC,
     "HybridLock.unlink(name): removes the lock called name."},
    {"__enter__", (PyCFunction)HybridLock_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)HybridLock_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef HybridLock_getset[] = {
    {"name", (getter)HybridLock_get_name, NULL, "The lock's name.", NULL},
    {"owner_died", (getter)HybridLock_get_owner_died, NULL,
     "Whether the last lock() took the lock from a holder that had died.", NULL},
    {"created_held", (getter)HybridLock_get_created, NULL,
     "Whether this open created the lock held (initial_value 0).", NULL},
    {"blocking_pid", (getter)HybridLock_blocking_pid, NULL,
     "The process holding the lock, 0 when free (a snapshot).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject HybridLockType = {
    PYSHM_TYPE("shmrpc.HybridLock", HybridLock, 0,
               "HybridLock(sem_loc, mode=CONNECT_OR_CREATE, initial_value=1, permissions=0o600)"
               "\n\nspeedysvc's hybrid spin lock over shmrpc's shared lock (docs/lock.md)."),
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)HybridLock_init,
    .tp_dealloc = (destructor)HybridLock_dealloc,
    .tp_methods = HybridLock_methods,
    .tp_getset = HybridLock_getset,
};

int pyshm_lock_init(PyObject *module)
{
    if (PyType_Ready(&HybridLockType) != 0 ||
        PyModule_AddObjectRef(module, "HybridLock", (PyObject *)&HybridLockType) != 0)
        return -1;
    if (!(NoSuchSemaphore = PyErr_NewExceptionWithDoc(
              "shmrpc.NoSuchSemaphore",
              "HybridLock(CONNECT_TO_EXISTING) found no lock by that name.", pyshm_Unavailable,
              NULL)) ||
        !(SemaphoreExists = PyErr_NewExceptionWithDoc(
              "shmrpc.SemaphoreExists",
              "HybridLock(CREATE_NEW_EXCLUSIVE) found a lock by that name.", pyshm_Error, NULL)) ||
        PyModule_AddObjectRef(module, "NoSuchSemaphore", NoSuchSemaphore) != 0 ||
        PyModule_AddObjectRef(module, "SemaphoreExists", SemaphoreExists) != 0)
        return -1;
    if (PyModule_AddIntConstant(module, "CONNECT_OR_CREATE", SHMRPC_LOCK_CONNECT_OR_CREATE) ||
        PyModule_AddIntConstant(module, "CONNECT_TO_EXISTING", SHMRPC_LOCK_CONNECT_TO_EXISTING) ||
        PyModule_AddIntConstant(module, "CREATE_NEW_OVERWRITE", SHMRPC_LOCK_CREATE_NEW_OVERWRITE) ||
        PyModule_AddIntConstant(module, "CREATE_NEW_EXCLUSIVE", SHMRPC_LOCK_CREATE_NEW_EXCLUSIVE))
        return -1;
    return 0;
}
