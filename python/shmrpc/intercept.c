/* SPDX-License-Identifier: MIT */
/* Interceptors written in Python (docs/python.md, "Interceptors"): an object's
 * before(call) and after(call, status) run around each call of a Client or of serve(),
 * through the library's interceptors (shmrpc/intercept.h), with the GIL taken for them. */
#include "pyshmrpc.h"

#include <limits.h>

static PyObject *namespace_type; /* types.SimpleNamespace */

/* What a hook is handed: a namespace with .service and .method; NULL raised. */
static PyObject *call_info(const shmrpc_call_info *call)
{
    PyObject *kw =
        Py_BuildValue("{s:s,s:s}", "service", call->service->name, "method", call->method->name);
    PyObject *ns = kw ? PyObject_VectorcallDict(namespace_type, NULL, 0, kw) : NULL;
    Py_XDECREF(kw);
    return ns;
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
    PyObject *info = call_info(call);
    PyObject *r = info ? PyObject_CallOneArg(i->before, info) : NULL;
    int rc = r ? 0 : hook_failed(i, call, "before", SHMRPC_EPERM);
    Py_XDECREF(r);
    Py_XDECREF(info);
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
    PyObject *info = call_info(call);
    PyObject *r = info ? PyObject_CallFunction(i->after, "Oi", info, status) : NULL;
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
    Py_XDECREF(info);
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
    PyObject *types = PyImport_ImportModule("types");
    namespace_type = types ? PyObject_GetAttrString(types, "SimpleNamespace") : NULL;
    Py_XDECREF(types);
    return namespace_type ? 0 : -1;
}
