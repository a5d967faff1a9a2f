/* SPDX-License-Identifier: MIT */
/* Serving from Python (shmrpc.serve, docs/python.md "Serving"): the .svc file is read at
 * run time by the project's front end (idl/), and its method table is built as shmrpcgen
 * writes it (the same canonical signatures and fingerprints), so that C clients connect as
 * to a generated server. One invoke function serves every method: it asks the context
 * which method is called (shmrpc_ctx_method), turns the request into Python values by the
 * parsed signature, calls the handler with the GIL of the worker process it runs in, and
 * turns the result back, or an exception into the call's error status with its message. */
#include "pyshmrpc.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmrpc/server.h>
#include <shmrpc/metadata.h>
#include <shmrpc/status.h>

#include "svc.h"

/* A service read from a .svc file, and what serving it needs. */
typedef struct pysvc {
    svc_arena *a;
    shmrpc_dyn *d; /* holds the parsed signatures */
    shmrpc_service_info info;
    shmrpc_method_info *methods; /* sorted by name, as the generator sorts them */
    const svc_method **decl;     /* the parsed method of each */
    const shmrpc_dyn_sig **sigs; /* each method's signature, parsed */
    shmrpc_dyn_type *args;       /* each method's parameters as one struct (JSON requests) */
    shmrpc_dyn_sig *args_sig;    /* ... as the result of a signature, for the codec */
    PyObject **handlers;         /* by method id (serving only) */
    shmrpc_invoke_fn *invoke;    /* every entry is py_invoke */
    size_t *offsets;             /* every method's handler is the one pointer below */
    shmrpc_buf json;             /* scratch space of the conversions */
} pysvc;

static void pysvc_free(pysvc *s)
{
    if (s->handlers)
        for (uint32_t i = 0; i < s->info.n_methods; i++)
            Py_XDECREF(s->handlers[i]);
    free(s->handlers);
    shmrpc_buf_destroy(&s->json);
    if (s->d) shmrpc_dyn_free(s->d);
    if (s->a) svc_arena_free(s->a);
    memset(s, 0, sizeof *s);
}

/* Reads path into s, or the .svc text text when it is not NULL (a class's, written by
 * shmrpc.svc; path then names it in messages), or raises (ValueError with the front end's
 * messages). */
static int pysvc_load(pysvc *s, const char *path, PyObject *text)
{
    memset(s, 0, sizeof *s);
    shmrpc_buf_init(&s->json);
    if ((s->a = svc_arena_new()) == NULL || shmrpc_dyn_new(&s->d, NULL) != 0) goto oom;
    char *errs = NULL;
    size_t errlen = 0;
    FILE *errout = open_memstream(&errs, &errlen);
    if (errout == NULL) goto oom;
    svc_file *f = NULL;
    if (text == NULL) {
        f = svc_load(s->a, errout, path, NULL);
    } else {
        Py_ssize_t n;
        const char *src = PyUnicode_AsUTF8AndSize(text, &n);
        if (src == NULL) {
            fclose(errout);
            free(errs);
            return -1;
        }
        svc_diag d;
        svc_diag_init(&d, errout, path, NULL, 0);
        f = svc_parse(s->a, &d, path, src, (size_t)n);
        if (f && d.errors == 0) svc_check(s->a, &d, f);
        if (d.errors) f = NULL;
    }
    fclose(errout);
    if (f == NULL || f->service == NULL) {
        size_t n = strlen(errs);
        while (n && errs[n - 1] == '\n')
            errs[--n] = 0;
        PyErr_Format(PyExc_ValueError, "%s", n ? errs : "no service in the file");
        free(errs);
        return -1;
    }
    free(errs);
    const svc_service *svc = f->service;
    uint32_t n = (uint32_t)svc->n_methods;
    s->methods = svc_arena_alloc(s->a, sizeof *s->methods * (n + 1));
    s->decl = svc_methods_by_name(s->a, svc); /* the method table's order, as shmrpcgen's */
    s->sigs = svc_arena_alloc(s->a, sizeof *s->sigs * (n + 1));
    s->args = svc_arena_alloc(s->a, sizeof *s->args * (n + 1));
    s->args_sig = svc_arena_alloc(s->a, sizeof *s->args_sig * (n + 1));
    s->invoke = svc_arena_alloc(s->a, sizeof *s->invoke * (n + 1));
    s->offsets = svc_arena_alloc(s->a, sizeof *s->offsets * (n + 1));
    if (!s->methods || !s->decl || !s->sigs || !s->args || !s->args_sig || !s->invoke ||
        !s->offsets)
        goto oom;
    uint32_t i;
    /* The service's fingerprint: every signature in name order, each with a newline. */
    shmrpc_buf all;
    shmrpc_buf_init(&all);
    for (i = 0; i < n; i++) {
        const svc_method *m = s->decl[i];
        /* The canonical text for the fingerprint and the codec; the table's for the table. */
        const char *sig = svc_signature(s->a, m, SIZE_MAX / 2, NULL);
        const char *tsig = svc_table_signature(s->a, m, SVC_MAX_SIGNATURE, NULL);
        const char *name = svc_arena_strndup(s->a, m->name.p, (size_t)m->name.n);
        if (sig == NULL || tsig == NULL || name == NULL) {
            shmrpc_buf_destroy(&all);
            goto oom;
        }
        shmrpc_buf_append(&all, sig, strlen(sig));
        shmrpc_buf_append(&all, "\n", 1);
        s->methods[i] = (shmrpc_method_info){
            .name = name,
            .id = i,
            .encoding = m->enc == SVC_ENC_JSON   ? SHMRPC_ENC_JSON
                        : svc_enc_is_raw(m->enc) ? SHMRPC_ENC_RAW
                                                 : SHMRPC_ENC_MSGPACK,
            .fingerprint = svc_fingerprint(sig),
            .signature = tsig,
        };
        if (shmrpc_dyn_sig_parse(s->d, sig, &s->sigs[i]) != 0) {
            shmrpc_buf_destroy(&all);
            PyErr_Format(PyExc_ValueError, "%s: method %s: %s", path, name, shmrpc_errmsg());
            return -1;
        }
        const shmrpc_dyn_sig *g = s->sigs[i];
        s->args[i] = (shmrpc_dyn_type){
            .kind = SHMRPC_DYN_STRUCT, .name = name, .n = g->n_params, .fields = g->params};
        s->args_sig[i] =
            (shmrpc_dyn_sig){.method = name, .result = &s->args[i], .encoding = g->encoding};
    }
    shmrpc_buf_append(&all, "", 1);
    if (all.err != 0) {
        shmrpc_buf_destroy(&all);
        goto oom;
    }
    uint64_t fp = svc_fingerprint((const char *)all.data);
    shmrpc_buf_destroy(&all);
    const char *sname = svc_arena_strndup(s->a, svc->name.p, (size_t)svc->name.n);
    int n_types = 0;
    const svc_decl **decls = svc_table_types(s->a, svc, &n_types);
    const char **types = svc_arena_alloc(s->a, sizeof *types * (size_t)(n_types + 1));
    if (sname == NULL || decls == NULL || types == NULL) goto oom;
    for (int t = 0; t < n_types; t++)
        if ((types[t] = svc_type_text(s->a, decls[t], SVC_MAX_SIGNATURE, NULL)) == NULL) goto oom;
    s->info = (shmrpc_service_info){
        .magic = SHMRPC_SERVICE_MAGIC,
        .version = SHMRPC_DESCRIPTOR_VERSION,
        .name = sname,
        .svc_name = svc->svc_name ? svc->svc_name : "",
        .port = (uint16_t)svc->port,
        .fingerprint = fp,
        .n_methods = n,
        .methods = n ? s->methods : NULL,
        .n_types = (uint32_t)n_types,
        .types = n_types ? types : NULL,
    };
    return 0;
oom:
    PyErr_NoMemory();
    return -1;
}

/* _svc_methods(path, text=None): (service name, [(method, [parameter names], signature)])
 * of a .svc file (or of the .svc text text), in name order, for serve()'s checks of the
 * handlers. */
static PyObject *svc_methods(PyObject *mod, PyObject *args, PyObject *kw)
{
    (void)mod;
    static char *names[] = {"path", "text", NULL};
    const char *p;
    PyObject *text = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|O!", names, &p, &PyUnicode_Type, &text))
        return NULL;
    pysvc s;
    PyObject *list = NULL, *r = NULL;
    if (pysvc_load(&s, p, text == Py_None ? NULL : text) != 0 || (list = PyList_New(0)) == NULL)
        goto done;
    for (uint32_t i = 0; i < s.info.n_methods; i++) {
        const shmrpc_dyn_sig *g = s.sigs[i];
        PyObject *names = PyList_New(0), *t = NULL;
        for (size_t k = 0; names && k < g->n_params; k++) {
            PyObject *nm = PyUnicode_FromString(g->params[k].name);
            if (nm == NULL || PyList_Append(names, nm) != 0) Py_CLEAR(names);
            Py_XDECREF(nm);
        }
        /* The canonical text, its structs and enums spelled out, as a client's methods. */
        const char *sig = svc_signature(s.a, s.decl[i], SIZE_MAX / 2, NULL);
        if (names && sig) t = Py_BuildValue("(sOs)", s.methods[i].name, names, sig);
        Py_XDECREF(names);
        if (t == NULL || PyList_Append(list, t) != 0) {
            Py_XDECREF(t);
            goto done;
        }
        Py_DECREF(t);
    }
    r = Py_BuildValue("(sO)", s.info.name, list);
done:
    Py_XDECREF(list);
    pysvc_free(&s);
    return r;
}

/* --- a call ------------------------------------------------------------------------------ */

/* The pending Python exception as the call's error: "TypeName: message", also printed with
 * its traceback to stderr (a service's log). */
static int handler_failed(shmrpc_ctx *ctx, const char *method, int rc)
{
    PyObject *type, *value, *tb;
    char msg[1024];
    rc = pyshm_failure(&type, &value, &tb, rc, msg, sizeof msg);
    shmrpc_ctx_error(ctx, rc, "%s", msg);
    fprintf(stderr, "shmrpc: handler of %s failed:\n", method);
    fflush(stderr);
    if (type) PyErr_Display(type, value, tb);
    Py_XDECREF(type), Py_XDECREF(value), Py_XDECREF(tb);
    return rc;
}

/* The request's arguments as a tuple in parameter order, or NULL raised. */
static PyObject *request_args(pysvc *s, uint32_t id, shmrpc_bytes req)
{
    const shmrpc_dyn_sig *g = s->sigs[id];
    if (g->encoding == SHMRPC_ENC_RAW)
        return Py_BuildValue("(y#)", (const char *)req.ptr, (Py_ssize_t)req.len);
    PyObject *args = PyTuple_New((Py_ssize_t)g->n_params);
    if (args == NULL) return NULL;
    if (g->encoding == SHMRPC_ENC_MSGPACK) {
        shmrpc_mp_reader r;
        uint32_t n;
        shmrpc_mp_reader_init(&r, req.ptr, req.len);
        /* An older client may leave trailing optional arguments out (None), a newer one send
         * more (skipped): docs/svc-language.md, "Compatible evolution". */
        size_t req_n = g->n_params;
        while (req_n > 0 && g->params[req_n - 1].type->kind == SHMRPC_DYN_OPT)
            req_n--;
        if (shmrpc_mp_read_array(&r, &n) != 0 || n < req_n) {
            Py_DECREF(args);
            return PyErr_Format(PyExc_ValueError, "expected an array of %s%zu arguments",
                                req_n < g->n_params ? "at least " : "", req_n);
        }
        for (size_t i = 0; i < g->n_params; i++) {
            PyObject *v = i >= n ? Py_NewRef(Py_None) : pyshm_from_mp(g->params[i].type, &r);
            if (v == NULL) {
                Py_DECREF(args);
                return NULL;
            }
            PyTuple_SET_ITEM(args, (Py_ssize_t)i, v);
        }
        if ((n > g->n_params && shmrpc_mp_skip(&r, n - (uint32_t)g->n_params) != 0) ||
            shmrpc_mp_finish(&r) != 0) {
            Py_DECREF(args);
            return PyErr_Format(PyExc_ValueError, "bytes after the arguments");
        }
        return args;
    }
    /* @json: the arguments are an object by name, read as a struct of the parameters. */
    PyObject *all = pyshm_decode(&s->args_sig[id], req.ptr, req.len, &s->json, "arguments");
    for (size_t i = 0; all && i < g->n_params; i++) {
        const char *name = g->params[i].name;
        PyObject *v = PyDict_Check(all) ? Py_XNewRef(PyDict_GetItemString(all, name))
                                        : PyObject_GetAttrString(all, name);
        if (v == NULL) {
            Py_CLEAR(all);
            break;
        }
        PyTuple_SET_ITEM(args, (Py_ssize_t)i, v);
    }
    if (all == NULL) Py_CLEAR(args);
    Py_XDECREF(all);
    return args;
}

/* The handler's result r, or an item of its stream (what: "result" or "item"), into resp;
 * or -1 raised. */
static int put_result(pysvc *s, uint32_t id, PyObject *r, const char *what, shmrpc_buf *resp)
{
    const shmrpc_dyn_sig *g = s->sigs[id];
    int rc;
    if (g->encoding == SHMRPC_ENC_RAW) {
        Py_buffer view;
        if (PyUnicode_Check(r) || PyObject_GetBuffer(r, &view, PyBUF_SIMPLE) != 0) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "%s: expected bytes, got %s", what, Py_TYPE(r)->tp_name);
            return -1;
        }
        rc = shmrpc_buf_append(resp, view.buf, (size_t)view.len);
        PyBuffer_Release(&view);
    } else if (g->result->kind == SHMRPC_DYN_VOID) {
        if (r != Py_None) {
            PyErr_Format(PyExc_TypeError, "%s: %s returns nothing, the handler returned %s", what,
                         g->method, Py_TYPE(r)->tp_name);
            return -1;
        }
        /* What a generated server answers: msgpack's nil, or JSON's null. */
        rc = g->encoding == SHMRPC_ENC_JSON ? shmrpc_buf_append(resp, "null", 4)
                                            : shmrpc_buf_append(resp, "\xc0", 1);
    } else if (g->encoding == SHMRPC_ENC_MSGPACK) {
        /* Straight to msgpack, as the client writes its requests. */
        msgpack_packer pk;
        place top = {.field = what, .bare = true};
        msgpack_packer_init(&pk, resp, shmrpc_buf_msgpack_write);
        if (pyshm_encode_mp(&pk, g->result, r, &top) != 0) return -1;
        rc = resp->err;
    } else {
        shmrpc_buf out;
        shmrpc_buf_init(&out);
        rc = pyshm_encode_body(g, r, what, &s->json, &out);
        if (rc != 0) {
            shmrpc_buf_destroy(&out);
            return -1;
        }
        rc = shmrpc_buf_append(resp, out.data, out.len);
        shmrpc_buf_destroy(&out);
    }
    if (rc == SHMRPC_ETOOBIG)
        PyErr_Format(PyExc_ValueError, "%s: larger than the server's maximum of %zu bytes", what,
                     resp->max);
    else if (rc != 0)
        PyErr_Format(PyExc_ValueError, "%s: %s", what, shmrpc_strerror(rc));
    return rc ? -1 : 0;
}

/* The items of the stream that r, the handler's result, iterates (a generator, or any
 * iterable), each encoded as a result is and sent as it comes, without the GIL while a
 * send waits for the client. 0 at its end. A send that fails (the client closed the stream
 * or went, its deadline passed, the server stops) ends it with that status, and the
 * iterator is closed then (below); an exception in the iteration, or an item that does not
 * encode, fails the call as a handler's does. */
static int send_items(shmrpc_ctx *ctx, pysvc *s, uint32_t id, PyObject *r)
{
    const char *name = s->methods[id].name;
    if (PyUnicode_Check(r) || PyBytes_Check(r) || PyByteArray_Check(r)) {
        /* Iterated, it would stream its characters or its byte values: surely a mistake. */
        PyErr_Format(PyExc_TypeError,
                     "%s streams its result: its handler returns an iterable of the items (a "
                     "generator, a list), not %s",
                     name, Py_TYPE(r)->tp_name);
        return handler_failed(ctx, name, SHMRPC_EHANDLER);
    }
    PyObject *it = PyObject_GetIter(r);
    if (it == NULL) return handler_failed(ctx, name, SHMRPC_EHANDLER);
    int rc = 0;
    PyObject *item;
    while (rc == 0 && (item = PyIter_Next(it)) != NULL) {
        shmrpc_buf *buf = shmrpc_ctx_item(ctx);
        int bad = put_result(s, id, item, "item", buf);
        Py_DECREF(item);
        if (bad && buf->err == SHMRPC_ETOOBIG) { /* as shmrpc_ctx_send says it */
            PyErr_Clear();
            rc = shmrpc_ctx_error(ctx, SHMRPC_ETOOBIG,
                                  "an item of '%s' is larger than the server's maximum of %zu "
                                  "bytes",
                                  name, buf->max);
            break;
        }
        if (bad) {
            rc = handler_failed(ctx, name, SHMRPC_EHANDLER);
            break;
        }
        Py_BEGIN_ALLOW_THREADS;
        rc = shmrpc_ctx_send(ctx, buf->data, buf->len); /* says why in ctx when it fails */
        Py_END_ALLOW_THREADS;
    }
    if (rc == 0 && PyErr_Occurred()) rc = handler_failed(ctx, name, SHMRPC_EHANDLER);
    /* Ended early: closed as `yield from` closes what it delegates to, a generator or any
     * iterator with a close method, so that its finally blocks run now (not when the last
     * reference goes, which the handler may hold). What the close raises is printed, a
     * SystemExit too, and ends nothing: the worker serves on. */
    if (rc != 0 && PyObject_HasAttrString(it, "close")) {
        PyObject *closed = PyObject_CallMethod(it, "close", NULL);
        if (closed == NULL) {
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            fprintf(stderr, "shmrpc: the stream of %s ended early, and closing it failed:\n", name);
            fflush(stderr);
            if (type) PyErr_Display(type, value, tb);
            Py_XDECREF(type), Py_XDECREF(value), Py_XDECREF(tb);
        }
        Py_XDECREF(closed);
    }
    Py_DECREF(it);
    return rc;
}

/* --- the items of a client stream: what the handler of a method whose parameter streams
 * is given. An iterator of the client's items, each decoded as an argument is; each next()
 * waits for one without the GIL. The client's end stops the iteration; a stream that cannot
 * go on (the client closed or cancelled it, went, its deadline passed, the server stops, an
 * item that does not decode) raises as a call's failure would, which the handler may let
 * go up: the call then fails with that status. Valid while its handler runs (and, for a
 * stream both ways, while its result is iterated). */
typedef struct {
    PyObject_HEAD shmrpc_ctx *ctx; /* NULL once the call is over */
    const shmrpc_dyn_sig *sig;     /* valid while ctx is not NULL */
    unsigned long thread;          /* the handler's: the only one that reads */
    char *method;                  /* for what is said after the call */
} ItemsObject;

static PyObject *Items_next(ItemsObject *self)
{
    if (self->ctx == NULL) {
        PyErr_Format(PyExc_ValueError, "the items of %s: its call is over", self->method);
        return NULL;
    }
    /* A read waits without the GIL: another thread's would race with it, and with the end of
     * the call, which the handler's return makes. */
    if (PyThread_get_thread_ident() != self->thread) {
        PyErr_Format(PyExc_RuntimeError, "the items of %s are read by its handler's thread only",
                     self->method);
        return NULL;
    }
    shmrpc_bytes item;
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = shmrpc_ctx_recv(self->ctx, &item);
    Py_END_ALLOW_THREADS;
    if (rc == 0) return NULL; /* StopIteration */
    if (rc < 0) return pyshm_raise_status(rc, self->sig->method, shmrpc_errmsg());
    if (self->sig->encoding == SHMRPC_ENC_RAW)
        return PyBytes_FromStringAndSize((const char *)item.ptr, (Py_ssize_t)item.len);
    shmrpc_mp_reader r;
    shmrpc_mp_reader_init(&r, item.ptr, item.len);
    PyObject *v = pyshm_from_mp(self->sig->params[0].type, &r);
    if (v != NULL && shmrpc_mp_finish(&r) != 0) {
        Py_CLEAR(v);
        PyErr_Format(PyExc_ValueError, "an item of %s: bytes after it", self->sig->method);
    }
    return v;
}

static void Items_dealloc(ItemsObject *self)
{
    free(self->method);
    PyObject_Free(self);
}

static PyTypeObject ItemsType = {
    PYSHM_TYPE("shmrpc._shmrpc.Items", ItemsObject, 0,
               "The items of a client stream, as its handler reads them (docs/streams.md)."),
    .tp_dealloc = (destructor)Items_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)Items_next,
};

/* The handler's arguments for a method whose parameter streams: the items' iterator. */
static PyObject *items_args(shmrpc_ctx *ctx, const shmrpc_dyn_sig *sig, ItemsObject **items)
{
    *items = PyObject_New(ItemsObject, &ItemsType);
    if (*items == NULL) return NULL;
    (*items)->ctx = NULL;
    (*items)->sig = sig;
    (*items)->thread = PyThread_get_thread_ident();
    if (((*items)->method = strdup(sig->method)) == NULL) return PyErr_NoMemory();
    (*items)->ctx = ctx;
    return PyTuple_Pack(1, (PyObject *)*items);
}

static int py_invoke(shmrpc_ctx *ctx, const void *handlers, shmrpc_bytes req, shmrpc_buf *resp)
{
    (void)handlers;
    pysvc *s = shmrpc_ctx_user(ctx);
    uint32_t id = shmrpc_ctx_method(ctx);
    const char *name = s->methods[id].name;
    PyGILState_STATE gil = PyGILState_Ensure();
    int rc = 0;
    ItemsObject *items = NULL;
    PyObject *args = s->sigs[id]->client_stream ? items_args(ctx, s->sigs[id], &items)
                                                : request_args(s, id, req);
    if (args == NULL) {
        rc = handler_failed(ctx, name, SHMRPC_EINVAL);
    } else {
        PyObject *r = PyObject_Call(s->handlers[id], args, NULL);
        Py_DECREF(args);
        if (r == NULL) {
            rc = handler_failed(ctx, name, SHMRPC_EHANDLER);
        } else if (s->sigs[id]->server_stream) {
            rc = send_items(ctx, s, id, r);
        } else if (put_result(s, id, r, "result", resp) != 0) {
            /* Above the maximum: dispatch says so, as of a generated handler's result. */
            if (resp->err == SHMRPC_ETOOBIG)
                PyErr_Clear();
            else
                rc = handler_failed(ctx, name, SHMRPC_EHANDLER);
        }
        Py_XDECREF(r);
    }
    if (items != NULL) { /* a handler that kept them reads no more */
        items->ctx = NULL;
        Py_DECREF(items);
    }
    PyGILState_Release(gil);
    return rc;
}

/* --- serve ------------------------------------------------------------------------------ */

static shmrpc_server *volatile serving;

/* The workers are forked by the library on the thread that serves, while it has let go
 * of the GIL. Around those forks the interpreter is prepared as os.fork() prepares it
 * (the GIL taken, Python's at-fork callbacks run, its locks and threads reset in the
 * child), so that a worker starts with a sound interpreter of its own even when other
 * Python threads ran at the fork. Only for forks of that thread while it serves. */
static PyThreadState *serve_tstate;
static pthread_t serve_thread;

static bool serving_fork(void)
{
    return serving != NULL && serve_tstate != NULL && pthread_equal(pthread_self(), serve_thread);
}

static void before_fork(void)
{
    if (!serving_fork()) return;
    PyEval_RestoreThread(serve_tstate);
    PyOS_BeforeFork();
}

static void after_fork_parent(void)
{
    if (!serving_fork()) return;
    PyOS_AfterFork_Parent();
    serve_tstate = PyEval_SaveThread();
}

static void after_fork_child(void)
{
    if (!serving_fork()) return;
    PyOS_AfterFork_Child();
    serve_tstate = PyEval_SaveThread();
}

static void on_stop(int sig)
{
    (void)sig;
    shmrpc_server *s = serving;
    if (s) shmrpc_server_stop(s);
}

/* Any non-NULL function: the library checks that each method has a handler, and this
 * service's handlers are the Python callables behind py_invoke. */
static void present(void) {}

/* _serve(path, handlers, address, workers, max_msg_bytes, text=None, secret_file=None,
 * interceptors=()): serves until SIGTERM or SIGINT. handlers: a dict method -> callable
 * with every method (serve() checks them first); text: the .svc text, when it is not the
 * file path's; secret_file: the tcp:// shared secret, read as shmrpc-service reads its
 * secret_file; interceptors: objects with before(call) and/or after(call, status). */
static PyObject *py_serve(PyObject *mod, PyObject *args, PyObject *kw)
{
    (void)mod;
    static char *names[] = {"path", "handlers",    "address",      "workers", "max_msg_bytes",
                            "text", "secret_file", "interceptors", NULL};
    const char *path, *addr, *secret_file = NULL;
    PyObject *handlers, *text = Py_None, *icpt_objs = NULL;
    int workers = 1;
    Py_ssize_t max_msg = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sO!s|inO!zO!", names, &path, &PyDict_Type,
                                     &handlers, &addr, &workers, &max_msg, &PyUnicode_Type, &text,
                                     &secret_file, &PyTuple_Type, &icpt_objs))
        return NULL;
    Py_ssize_t n_icpts = icpt_objs ? PyTuple_GET_SIZE(icpt_objs) : 0;
    if (n_icpts > SHMRPC_MAX_INTERCEPTORS)
        return PyErr_Format(PyExc_ValueError, "a server has at most %d interceptors",
                            SHMRPC_MAX_INTERCEPTORS);
    pyshm_icpt icpts[SHMRPC_MAX_INTERCEPTORS] = {0};
    uint8_t secret[SHMRPC_SECRET_MAX];
    size_t secret_len = 0;
    if (secret_file != NULL) {
        int rc = shmrpc_secret_load(secret_file, secret, sizeof secret, &secret_len);
        if (rc != 0) return pyshm_raise_status(rc, "secret_file", shmrpc_errmsg());
    }
    if (workers < 0 || workers > SHMRPC_MAX_WORKERS)
        return PyErr_Format(PyExc_ValueError, "workers: 0 to %d, not %d", SHMRPC_MAX_WORKERS,
                            workers);
    if (max_msg < 0) return PyErr_Format(PyExc_ValueError, "max_msg_bytes: negative");
    if (serving != NULL) return PyErr_Format(PyExc_RuntimeError, "this process serves already");
    pysvc *s = calloc(1, sizeof *s);
    if (s == NULL) return PyErr_NoMemory();
    shmrpc_server *srv = NULL;
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < n_icpts; i++)
        if (pyshm_icpt_from(PyTuple_GET_ITEM(icpt_objs, i), &icpts[i]) != 0) goto done;
    if (pysvc_load(s, path, text == Py_None ? NULL : text) != 0) goto done;
    uint32_t n = s->info.n_methods;
    if ((s->handlers = calloc(n + 1, sizeof *s->handlers)) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (uint32_t i = 0; i < n; i++) {
        PyObject *h = PyDict_GetItemString(handlers, s->methods[i].name);
        if (h == NULL || !PyCallable_Check(h)) {
            PyErr_Format(PyExc_TypeError, "no handler for method '%s'", s->methods[i].name);
            goto done;
        }
        s->handlers[i] = Py_NewRef(h);
        s->invoke[i] = py_invoke;
        s->offsets[i] = 0;
    }
    void (*table)(void) = present;
    shmrpc_service svc = {.magic = SHMRPC_SERVICE_MAGIC,
                          .version = SHMRPC_DESCRIPTOR_VERSION,
                          .info = &s->info,
                          .invoke = s->invoke,
                          .handler_offset = s->offsets,
                          .handlers_size = sizeof table};
    shmrpc_server_opts o;
    shmrpc_server_opts_init(&o);
    o.max_msg_bytes = (size_t)max_msg;
    if (secret_len) {
        o.tcp.secret = secret;
        o.tcp.secret_len = secret_len;
    }
    int rc = shmrpc_server_new(&srv, &o);
    if (rc == 0) rc = shmrpc_server_register(srv, &svc, &table, s);
    for (Py_ssize_t i = 0; rc == 0 && i < n_icpts; i++) {
        shmrpc_interceptor hooks = pyshm_icpt_hooks(&icpts[i]);
        rc = shmrpc_server_intercept(srv, &hooks, &icpts[i]);
    }
    if (rc == 0) rc = shmrpc_server_listen(srv, addr);
    if (rc != 0) {
        pyshm_raise_status(rc, "serve", shmrpc_errmsg());
        goto done;
    }
    /* SIGTERM (a supervisor's stop) and SIGINT (^C) stop serving: the GIL is released
     * while it serves, so Python's own handlers would not run until it returned. */
    struct sigaction sa = {.sa_handler = on_stop}, old_term, old_int;
    sigemptyset(&sa.sa_mask);
    serving = srv;
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGINT, &sa, &old_int);
    char msg[512] = "";
    static bool atfork;
    if (!atfork && pthread_atfork(before_fork, after_fork_parent, after_fork_child) == 0)
        atfork = true;
    serve_thread = pthread_self();
    serve_tstate = PyEval_SaveThread();
    rc = shmrpc_server_serve(srv, workers);
    if (rc != 0) snprintf(msg, sizeof msg, "%s", shmrpc_errmsg());
    PyEval_RestoreThread(serve_tstate);
    serve_tstate = NULL;
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    serving = NULL;
    if (rc != 0) {
        pyshm_raise_status(rc, "serve", msg);
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    if (srv) shmrpc_server_free(srv);
    for (Py_ssize_t i = 0; i < n_icpts; i++)
        pyshm_icpt_clear(&icpts[i]);
    pysvc_free(s);
    free(s);
    return result;
}

/* shmrpc.deadline(): the deadline of the call this thread's handler serves, on
 * time.monotonic()'s clock (CLOCK_MONOTONIC, as shmrpc_ctx_deadline's), or None. */
static PyObject *deadline(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    shmrpc_ctx *ctx = shmrpc_ctx_current();
    int64_t at = ctx ? shmrpc_ctx_deadline(ctx) : INT64_MAX;
    if (at == INT64_MAX) Py_RETURN_NONE;
    return PyFloat_FromDouble((double)at / 1e9);
}

/* shmrpc.cancelled(): None while the client of this thread's call still waits for it (or
 * outside a handler); else the exception that says why, not raised. */
static PyObject *cancelled(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    shmrpc_ctx *ctx = shmrpc_ctx_current();
    int why = ctx ? shmrpc_ctx_cancelled(ctx) : 0;
    if (why == 0) Py_RETURN_NONE;
    pyshm_raise_status(why, "the call this handler serves",
                       why == SHMRPC_ETIMEDOUT    ? "its deadline passed"
                       : why == SHMRPC_ECANCELLED ? "its client cancelled it"
                                                  : "its client is gone");
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

/* shmrpc.metadata(): the metadata of the call this thread's handler serves, {str: str}
 * ({} outside a handler). */
static PyObject *metadata(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    return pyshm_metadata_dict(shmrpc_ctx_metadata_all(shmrpc_ctx_current()));
}

/* shmrpc.traceparent(): the traceparent of the call this thread's handler serves (its own
 * span on the client's trace, or a fresh trace), or None outside a handler. */
static PyObject *traceparent(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    shmrpc_ctx *ctx = shmrpc_ctx_current();
    if (!ctx) Py_RETURN_NONE;
    return PyUnicode_FromString(shmrpc_ctx_traceparent(ctx));
}

/* shmrpc.set_traceparent(tp): the traceparent this handler's calls carry on. */
static PyObject *set_traceparent(PyObject *self, PyObject *arg)
{
    (void)self;
    shmrpc_ctx *ctx = shmrpc_ctx_current();
    const char *tp = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (!tp) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "set_traceparent(tp: str)");
        return NULL;
    }
    if (!ctx) {
        PyErr_SetString(PyExc_RuntimeError, "set_traceparent: not in a handler");
        return NULL;
    }
    if (shmrpc_ctx_set_traceparent(ctx, tp) != 0) {
        PyErr_SetString(PyExc_ValueError, shmrpc_errmsg());
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef serve_methods[] = {
    {"metadata", metadata, METH_NOARGS,
     "metadata(): the metadata of the call this handler serves, a dict of str ({} outside a "
     "handler)."},
    {"traceparent", traceparent, METH_NOARGS,
     "traceparent(): the W3C traceparent of the call this handler serves: the client's "
     "trace-id with a span of its own (a fresh trace when the client sent none); None outside "
     "a handler. The calls the handler makes carry it on."},
    {"set_traceparent", set_traceparent, METH_O,
     "set_traceparent(tp): makes tp the traceparent the handler's calls carry on (ValueError "
     "for an invalid one)."},
    {"deadline", deadline, METH_NOARGS,
     "deadline(): the deadline of the call this handler serves, on time.monotonic()'s clock, "
     "or None (no deadline, or not in a handler)."},
    {"cancelled", cancelled, METH_NOARGS,
     "cancelled(): None while the client of the call this handler serves still waits for it; "
     "else the exception that says why (Timeout, Cancelled or PeerDied), to raise or return."},
    {"_svc_methods", (PyCFunction)(void (*)(void))svc_methods, METH_VARARGS | METH_KEYWORDS,
     "_svc_methods(path, text=None): (service, [(method, [parameter names], signature)]) of a "
     ".svc file or text."},
    {"_serve", (PyCFunction)(void (*)(void))py_serve, METH_VARARGS | METH_KEYWORDS,
     "_serve(path, handlers, address, workers=1, max_msg_bytes=0, text=None, secret_file=None): "
     "serve until SIGTERM."},
    {NULL, NULL, 0, NULL},
};

int pyshm_serve_init(PyObject *module)
{
    if (PyType_Ready(&ItemsType) != 0 ||
        PyModule_AddObjectRef(module, "Items", (PyObject *)&ItemsType) != 0)
        return -1;
    return PyModule_AddFunctions(module, serve_methods);
}
