/* SPDX-License-Identifier: MIT */
/* The send() of speedysvc's clients (shmrpc.methods, docs/python.md "speedysvc's API"), in
 * C: send(Server.method, args) looks the method up and calls the client's own C callable
 * with args spread, so that a call through ClientMethodsBase costs one Python frame (the
 * user's method) above a plain client call, not two. What is not bound yet goes to the
 * Python side, which binds it (checks the server's table) and calls it. */
#include "pyshmrpc.h"

typedef struct {
    PyObject_HEAD PyObject
        *star;       /* method -> callable taking the arguments spread (@json, @msgpack) */
    PyObject *calls; /* method -> callable taking args as they are (@raw, @pickle, ...) */
    PyObject *bind;  /* bind(method, args): binds method and calls it */
    vectorcallfunc vectorcall;
} SenderObject;

static PyObject *Sender_vectorcall(PyObject *o, PyObject *const *a, size_t nargsf, PyObject *kw)
{
    SenderObject *self = (SenderObject *)o;
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    if (n != 2 || (kw && PyTuple_GET_SIZE(kw))) {
        PyErr_SetString(PyExc_TypeError, "send(method, args): two arguments");
        return NULL;
    }
    PyObject *call = PyDict_GetItemWithError(self->star, a[0]);
    if (call != NULL) {
        PyObject *args = a[1];
        if (PyTuple_CheckExact(args))
            return PyObject_Vectorcall(call, &PyTuple_GET_ITEM(args, 0),
                                       (size_t)PyTuple_GET_SIZE(args), NULL);
        if (PyList_CheckExact(args) && PyList_GET_SIZE(args) <= 8) {
            /* the items held here: code the call runs (an __index__) may change the list */
            PyObject *items[8];
            Py_ssize_t k = PyList_GET_SIZE(args);
            for (Py_ssize_t i = 0; i < k; i++)
                items[i] = Py_NewRef(PyList_GET_ITEM(args, i));
            PyObject *r = PyObject_Vectorcall(call, items, (size_t)k, NULL);
            for (Py_ssize_t i = 0; i < k; i++)
                Py_DECREF(items[i]);
            return r;
        }
        /* A str, bytes or dict would be spread: the Python side refuses it, naming it. */
        if (PyUnicode_Check(args) || PyBytes_Check(args) || PyByteArray_Check(args) ||
            PyDict_Check(args))
            return PyObject_Vectorcall(self->bind, a, 2, NULL);
        PyObject *tuple = PySequence_Tuple(args);
        if (tuple == NULL) return NULL;
        PyObject *r = PyObject_Vectorcall(call, &PyTuple_GET_ITEM(tuple, 0),
                                          (size_t)PyTuple_GET_SIZE(tuple), NULL);
        Py_DECREF(tuple);
        return r;
    }
    if (PyErr_Occurred()) return NULL; /* an unhashable method */
    call = PyDict_GetItemWithError(self->calls, a[0]);
    if (call != NULL) return PyObject_CallOneArg(call, a[1]);
    if (PyErr_Occurred()) return NULL;
    return PyObject_Vectorcall(self->bind, a, 2, NULL);
}

static PyObject *Sender_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    PyObject *star, *calls, *bind;
    static char *names[] = {"star", "calls", "bind", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!O!O:_Sender", names, &PyDict_Type, &star,
                                     &PyDict_Type, &calls, &bind))
        return NULL;
    SenderObject *self = (SenderObject *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->star = Py_NewRef(star);
    self->calls = Py_NewRef(calls);
    self->bind = Py_NewRef(bind);
    self->vectorcall = Sender_vectorcall;
    return (PyObject *)self;
}

static int Sender_traverse(SenderObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->star);
    Py_VISIT(self->calls);
    Py_VISIT(self->bind);
    return 0;
}

static int Sender_clear(SenderObject *self)
{
    Py_CLEAR(self->star);
    Py_CLEAR(self->calls);
    Py_CLEAR(self->bind);
    return 0;
}

static void Sender_dealloc(SenderObject *self)
{
    PyObject_GC_UnTrack(self);
    Sender_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject SenderType = {
    PYSHM_TYPE("shmrpc._shmrpc._Sender", SenderObject,
               Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
               "_Sender(star, calls, bind): send(method, args) of speedysvc's clients."),
    .tp_new = Sender_new,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(SenderObject, vectorcall),
    .tp_traverse = (traverseproc)Sender_traverse,
    .tp_clear = (inquiry)Sender_clear,
    .tp_dealloc = (destructor)Sender_dealloc,
};

int pyshm_send_init(PyObject *module)
{
    if (PyType_Ready(&SenderType) != 0) return -1;
    Py_INCREF(&SenderType);
    if (PyModule_AddObject(module, "_Sender", (PyObject *)&SenderType) != 0) {
        Py_DECREF(&SenderType);
        return -1;
    }
    return 0;
}
