/* SPDX-License-Identifier: MIT */
/* shmrpc._shmrpc: the CPython extension under `import shmrpc` (docs/python.md), put together:
 * the module, its functions for __init__.py, and the init that adds each part's types and
 * functions (client.c, store.c, serve.c, send.c) after the exceptions (errors.c). */
#include "pyshmrpc.h"

#include <stddef.h>

#include <shmrpc/dynamic.h>
#include <shmrpc/status.h>

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
    {"_set_struct_factory", pyshm_set_struct_factory, METH_O, NULL},
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

PyMODINIT_FUNC PyInit__shmrpc(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    pyshm_forks_init();
    if (pyshm_client_init(m) != 0 || pyshm_errors_init(m) != 0 || pyshm_intercept_init() != 0 ||
        pyshm_decode_init() != 0 || pyshm_store_init(m) != 0 || pyshm_serve_init(m) != 0 ||
        pyshm_send_init(m) != 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
