/* SPDX-License-Identifier: MIT */
/* The module's exceptions (shmrpc.Error and its subclasses) and the one way every part of
 * the extension raises a failed library call as one of them, with its status and message. */
#include "pyshmrpc.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <shmrpc/status.h>

PyObject *pyshm_Error, *pyshm_Timeout, *pyshm_Unavailable, *pyshm_Mismatch, *pyshm_HandlerError,
    *pyshm_PeerDied, *pyshm_Cancelled;

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
    case SHMRPC_ECANCELLED:
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
        case SHMRPC_ECANCELLED:
            cls = pyshm_Cancelled;
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

static PyObject *new_exc(PyObject *m, const char *name, PyObject *base, const char *doc)
{
    char full[64];
    snprintf(full, sizeof full, "shmrpc.%s", name);
    PyObject *e = PyErr_NewExceptionWithDoc(full, doc, base, NULL);
    if (e == NULL || PyModule_AddObjectRef(m, name, e) != 0) return NULL;
    return e;
}

int pyshm_status_of(PyObject *type, PyObject *value, int rc)
{
    PyObject *st = value ? PyObject_GetAttrString(value, "status") : NULL;
    if (st == NULL) PyErr_Clear();
    if (st != NULL && PyLong_Check(st)) {
        long v = PyLong_AsLong(st);
        if (v == SHMRPC_EINVAL || v == SHMRPC_ENOENT || v == SHMRPC_EPERM || v == SHMRPC_EBUSY ||
            v == SHMRPC_EHANDLER)
            rc = (int)v;
        PyErr_Clear();
    } else if (type && PyErr_GivenExceptionMatches(type, PyExc_ValueError)) {
        rc = SHMRPC_EINVAL;
    }
    Py_XDECREF(st);
    return rc;
}

int pyshm_failure(PyObject **type, PyObject **value, PyObject **tb, int rc, char *msg, size_t cap)
{
    PyErr_Fetch(type, value, tb);
    PyErr_NormalizeException(type, value, tb);
    rc = pyshm_status_of(*type, *value, rc);
    const char *tname = *type ? ((PyTypeObject *)*type)->tp_name : "error";
    PyObject *text = *value ? PyObject_Str(*value) : NULL;
    const char *m = text ? PyUnicode_AsUTF8(text) : NULL;
    if (m == NULL) PyErr_Clear();
    if (m && *m)
        snprintf(msg, cap, "%s: %s", tname, m);
    else
        snprintf(msg, cap, "%s", tname);
    Py_XDECREF(text);
    return rc;
}

int pyshm_errors_init(PyObject *m)
{
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
                                   "The server died during the call: .may_have_run is True.")) ||
        !(pyshm_Cancelled = new_exc(m, "Cancelled", pyshm_Error,
                                    "The call was cancelled (Connection.cancel()); "
                                    ".may_have_run says whether it may have run.")))
        return -1;
    return 0;
}
