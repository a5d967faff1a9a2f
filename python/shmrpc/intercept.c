/* SPDX-License-Identifier: MIT */
/* Interceptors written in Python (docs/python.md, "Interceptors"): an object's
 * before(call) and after(call, status) run around each call of a Client or of serve(),
 * through the library's interceptors (shmrpc/intercept.h), with the GIL taken for them; and
 * a call's metadata as a dict, which the hooks' call.metadata and serve()'s
 * shmrpc.metadata() hand over alike. */
#include "pyshmrpc.h"

#include <structmember.h>

#include <limits.h>

PyObject *pyshm_metadata_dict(const shmrpc_metadata *m)
{
    PyObject *d = PyDict_New();
    for (size_t i = 0; d && i < shmrpc_metadata_count(m); i++) {
        const char *k, *v;
        shmrpc_metadata_at(m, i, &k, &v);
        PyObject *value = PyUnicode_FromString(v); /* UTF-8: checked as it came */
        if (value == NULL || PyDict_SetItemString(d, k, value) != 0) Py_CLEAR(d);
        Py_XDECREF(value);
    }
    return d;
}

/* What a hook is handed: the call's service and method names, and its metadata, read
 * from the library's call only while the hook runs (call_info_end cuts it off). */
typedef struct {
    PyObject_HEAD PyObject *service, *method; /* str */
    const shmrpc_metadata *meta;              /* the call's (NULL: none), valid while live */
    bool live;                                /* the hook has not returned yet */
} CallObject;

static void Call_dealloc(CallObject *self)
{
    Py_XDECREF(self->service);
    Py_XDECREF(self->method);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* call.metadata: a new dict on each read, built only then (a hook that never reads it
 * pays nothing for it); RuntimeError once the hook returned. */
static PyObject *Call_metadata(CallObject *self, void *unused)
{
    (void)unused;
    if (!self->live) {
        PyErr_SetString(PyExc_RuntimeError,
                        "call.metadata is there only while the interceptor's hook runs");
        return NULL;
    }
    return pyshm_metadata_dict(self->meta);
}

static PyObject *Call_repr(CallObject *self)
{
    return PyUnicode_FromFormat("<shmrpc call %U.%U>", self->service, self->method);
}

static PyMemberDef Call_members[] = {
    {"service", T_OBJECT, offsetof(CallObject, service), READONLY, "The service's name."},
    {"method", T_OBJECT, offsetof(CallObject, method), READONLY, "The method's name."},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Call_getset[] = {
    {"metadata", (getter)Call_metadata, NULL,
     "The call's metadata, a dict of str ({} for none): on a client what it sends, on a "
     "server what came. Only while the hook runs.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CallType = {
    PYSHM_TYPE("shmrpc._shmrpc.Call", CallObject, 0,
               "The call an interceptor's before(call) and after(call, status) see."),
    .tp_dealloc = (destructor)Call_dealloc,
    .tp_repr = (reprfunc)Call_repr,
    .tp_members = Call_members,
    .tp_getset = Call_getset,
};

/* What a hook is handed for call; NULL raised. */
static CallObject *call_info(const shmrpc_call_info *call)
{
    CallObject *c = PyObject_New(CallObject, &CallType);
    if (c == NULL) return NULL;
    c->service = PyUnicode_FromString(call->service->name);
    c->method = PyUnicode_FromString(call->method->name);
    c->meta = call->metadata;
    c->live = true;
    if (c->service && c->method) return c;
    Py_DECREF(c);
    return NULL;
}

/* The hook returned: what it kept of call reads no more of the library's call. */
static void call_info_end(CallObject *c)
{
    if (c == NULL) return;
    c->live = false;
    c->meta = NULL;
    Py_DECREF(c);
}

/* The exception a hook raised as the call's status (pyshm_status_of, dflt when it names
 * none) and message ("TypeName: message"): kept in *i->pending, to be raised again to a
 * client's caller, or on a server printed with its traceback to stderr (a service's log). */
static int hook_failed(const pyshm_icpt *i, const shmrpc_call_info *call, const char *hook,
                       int dflt)
{
    PyObject *type, *value, *tb;
    char msg[1024];
    int rc = pyshm_failure(&type, &value, &tb, dflt, msg, sizeof msg);
    shmrpc_intercept_error(call, rc, "%s", msg);
    if (i->pending != NULL && value != NULL) {
        if (tb) PyException_SetTraceback(value, tb);
        Py_XSETREF(*i->pending, Py_NewRef(value));
    } else {
        fprintf(stderr, "shmrpc: interceptor's %s of %s failed:\n", hook, call->method->name);
        fflush(stderr);
        if (type) PyErr_Display(type, value, tb);
    }
    Py_XDECREF(type), Py_XDECREF(value), Py_XDECREF(tb);
    return rc;
}

/* before(call): returning lets the call go on, raising refuses it (SHMRPC_EPERM unless the
 * exception names another status). */
static int py_before(void *arg, const shmrpc_call_info *call)
{
    const pyshm_icpt *i = arg;
    PyGILState_STATE gil = PyGILState_Ensure();
    CallObject *info = call_info(call);
    PyObject *r = info ? PyObject_CallOneArg(i->before, (PyObject *)info) : NULL;
    int rc = r ? 0 : hook_failed(i, call, "before", SHMRPC_EPERM);
    Py_XDECREF(r);
    call_info_end(info);
    PyGILState_Release(gil);
    return rc;
}

/* after(call, status): returning None keeps the status, a negative int replaces it,
 * raising replaces it with the exception's (the status itself, or SHMRPC_EHANDLER for a
 * call that had succeeded, unless the exception names another). */
static int py_after(void *arg, const shmrpc_call_info *call, int status)
{
    const pyshm_icpt *i = arg;
    PyGILState_STATE gil = PyGILState_Ensure();
    CallObject *info = call_info(call);
    PyObject *r = info ? PyObject_CallFunction(i->after, "Oi", (PyObject *)info, status) : NULL;
    int rc = status;
    if (r == NULL) {
        rc = hook_failed(i, call, "after", status ? status : SHMRPC_EHANDLER);
    } else if (PyLong_Check(r)) {
        long v = PyLong_AsLong(r);
        if (v == -1 && PyErr_Occurred())
            PyErr_Clear();
        else if (v < 0 && v >= INT_MIN)
            rc = (int)v;
    }
    Py_XDECREF(r);
    call_info_end(info);
    PyGILState_Release(gil);
    return rc;
}

shmrpc_interceptor pyshm_icpt_hooks(const pyshm_icpt *i)
{
    return (shmrpc_interceptor){.before = i->before ? py_before : NULL,
                                .after = i->after ? py_after : NULL};
}

int pyshm_icpt_from(PyObject *obj, pyshm_icpt *i)
{
    *i = (pyshm_icpt){0};
    static const char *const names[2] = {"before", "after"};
    PyObject **hooks[2] = {&i->before, &i->after};
    for (int k = 0; k < 2; k++) {
        PyObject *h = PyObject_GetAttrString(obj, names[k]);
        if (h == NULL && !PyErr_ExceptionMatches(PyExc_AttributeError)) goto fail;
        PyErr_Clear();
        if (h == Py_None) Py_CLEAR(h);
        if (h != NULL && !PyCallable_Check(h)) {
            PyErr_Format(PyExc_TypeError, "an interceptor's %s must be callable, not %.100s",
                         names[k], Py_TYPE(h)->tp_name);
            Py_DECREF(h);
            goto fail;
        }
        *hooks[k] = h;
    }
    if (i->before || i->after) return 0;
    PyErr_Format(PyExc_TypeError,
                 "an interceptor has a before(call) or an after(call, status) "
                 "method; %.100s has neither",
                 Py_TYPE(obj)->tp_name);
fail:
    pyshm_icpt_clear(i);
    return -1;
}

void pyshm_icpt_clear(pyshm_icpt *i)
{
    Py_CLEAR(i->before);
    Py_CLEAR(i->after);
}

int pyshm_intercept_init(void)
{
    return PyType_Ready(&CallType);
}
