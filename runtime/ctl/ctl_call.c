/* SPDX-License-Identifier: MIT */
/* shmrpcctl call: the arguments and the output of the subcommand; the library's dynamic
 * codec (shmrpc/dynamic.h) connects, learns the method table and converts. */
#include "ctl_call.h"

#include <getopt.h> /* optind */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmrpc/client.h>
#include <shmrpc/dynamic.h>
#include <shmrpc/metadata.h>
#include <shmrpc/status.h>
#include <shmrpc/tcp.h>

#include "ctl_bytes.h"
#include "usage.h"

#define USAGE                                                                                      \
    "usage: shmrpcctl call [--timeout MS] [--secret-file PATH] [--trace[=TRACEPARENT]]\n"          \
    "                      [TLS OPTIONS] ADDRESS METHOD [ARGS-AS-JSON|-]\n"                        \
    "A method whose parameter streams takes its items from stdin, one JSON value a line;\n"        \
    "one whose result streams prints its items, one JSON value a line, as they come.\n"            \
    "--trace sends a W3C traceparent with the call (a fresh one, or TRACEPARENT to continue a\n"   \
    "trace) and prints it on stderr as \"traceparent: 00-...\"; the server's span is its "         \
    "child.\n" CTL_TLS_USAGE

/* Reads all of stdin for ARGS "-". */
static char *read_stdin(size_t *n)
{
    size_t cap = 4096, len = 0;
    char *p = malloc(cap);
    while (p != NULL) {
        size_t got = fread(p + len, 1, cap - len, stdin);
        len += got;
        if (got == 0) break;
        if (len == cap) {
            char *q = cap < SIZE_MAX / 2 ? realloc(p, cap *= 2) : NULL;
            if (q == NULL) free(p);
            p = q;
        }
    }
    *n = len;
    return p;
}

static int connect_failed(const char *addr, int rc, const char *msg)
{
    fprintf(stderr, "shmrpcctl: %s: %s%s", addr, shmrpc_strerror(rc), *msg ? ": " : "");
    ctl_put_safe(stderr, msg);
    fputc('\n', stderr);
    return 1;
}

int ctl_client_options(int argc, char **argv, unsigned takes, const char *usage, ctl_opts *o)
{
    int i = ctl_opts_read(argc, argv, CTL_OPT_DEADLINE | CTL_OPT_CLIENT | takes,
                          CTL_OPT_DEADLINE | CTL_OPT_CLIENT | takes, o);
    if (o->help) return shmrpc__usage(true, usage);
    return i < 0 ? ctl_usage_error(argv[0], o->why) : -1;
}

/* A failed call or stream: "shmrpcctl: METHOD: STATUS: the server's message". */
static void said_failed(const char *method, int rc)
{
    /* The server's own words, which it may fill with anything. */
    const char *said = shmrpc_errmsg();
    fprintf(stderr, "shmrpcctl: %s: %s%s", method, shmrpc_strerror(rc), *said ? ": " : "");
    ctl_put_safe(stderr, said);
    fputc('\n', stderr);
}

/* "shmrpcctl: METHOD: " and the library's last message (a codec's, naming the place). */
static void said_why(const char *method)
{
    fprintf(stderr, "shmrpcctl: %s: ", method);
    ctl_put_safe(stderr, shmrpc_errmsg());
    fputc('\n', stderr);
}

/* Opens the stream of method m, whose request is in c's: NULL, said, when it cannot be. */
static shmrpc_stream *opened(shmrpc_client *c, const shmrpc_method_info *m, const char *method)
{
    shmrpc_stream *st;
    int rc = shmrpc_client_open(c, m->id, &st);
    if (rc != 0) said_failed(method, rc);
    return rc == 0 ? st : NULL;
}

/* Prints an answer of method sig as a line of JSON: 0, or 1 when it does not decode (said)
 * or cannot be written. */
static int print_answer(const shmrpc_dyn_sig *sig, const char *method, shmrpc_bytes answer)
{
    shmrpc_buf out;
    shmrpc_buf_init(&out);
    int status = 0;
    if (shmrpc_dyn_decode_result(sig, answer.ptr, answer.len, &out) != 0) {
        said_why(method);
        status = 1;
    } else {
        fwrite(out.data, 1, out.len, stdout);
        fputc('\n', stdout);
        status = fflush(stdout) == 0 ? 0 : 1;
    }
    shmrpc_buf_destroy(&out);
    return status;
}

/* Whether line holds nothing but white space. */
static bool blank(const char *line, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r\n", line[i])) return false;
    return true;
}

/* The sends of stdin's lines as a stream's items (call_items, call_both): one JSON value a
 * line, blank lines passed over. Of a method that streams both ways they run on a thread of
 * their own while the caller's receives, and stop once it is over (mu). */
typedef struct sender {
    shmrpc_client *c;
    shmrpc_stream *st;
    const shmrpc_dyn_sig *sig;
    const char *method;
    bool both;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool over;    /* the receiver is done with the stream: no send begins */
    bool sending; /* a send (or the end) is under way */
    bool ended;   /* the sends ended: status says how */
    int status;   /* 0, 1 (a send failed), or 2 (a line that is no item): sends_failed */
} sender;

/* Whether a send of s may begin; it is then under way until sent(s). */
static bool may_send(sender *s)
{
    if (!s->both) return true;
    pthread_mutex_lock(&s->mu);
    bool may = !s->over;
    s->sending = may;
    pthread_mutex_unlock(&s->mu);
    return may;
}

static void sent(sender *s)
{
    if (!s->both) return;
    pthread_mutex_lock(&s->mu);
    s->sending = false;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* The sends end with status (1 or 2), said with line no and why (NULL: stdin could not be
 * read): both ways, unless the receiver is done with the stream, which is then cancelled
 * (its handler and the receives told) before the receiver may go on. */
static int sends_failed(sender *s, int status, long no, const char *why)
{
    if (s->both) pthread_mutex_lock(&s->mu);
    if (!s->over) {
        if (why != NULL) {
            fprintf(stderr, "shmrpcctl: %s: stdin, line %ld: ", s->method, no);
            ctl_put_safe(stderr, why);
            fputc('\n', stderr);
        } else {
            fprintf(stderr, "shmrpcctl: %s: cannot read stdin, line %ld\n", s->method, no);
        }
        s->status = status;
        if (s->both) shmrpc_client_cancel(s->c);
    }
    if (s->both) pthread_mutex_unlock(&s->mu);
    return status;
}

/* Sends each line of stdin as an item of s->st, then its end (both ways; one way, the
 * answer's wait sends it): 0, or the status of sends_failed. A handler that answers before
 * the last line ends the sends. A line that is no item of the method, or a send that fails,
 * ends the stream (sends_failed); both ways, only the line's own failures are said here (no
 * item, or above the maximum), and any other is the stream's end, which the receives say. */
static int send_lines(sender *s)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long no = 0;
    int status = 0, rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, stdin)) >= 0) {
        no++;
        if (blank(line, (size_t)len)) continue;
        if (!may_send(s)) break;
        shmrpc_buf *item = shmrpc_stream_item(s->st);
        int bad = shmrpc_dyn_encode_item(s->sig, line, (size_t)len, item);
        rc = bad ? bad : shmrpc_stream_send(s->st, item->data, item->len);
        /* ECLOSED: the handler answered, and the answer says the rest. */
        if (rc != 0 && rc != SHMRPC_ECLOSED && (!s->both || bad || rc == SHMRPC_ETOOBIG))
            status = sends_failed(s, rc == SHMRPC_EINVAL ? 2 : 1, no, shmrpc_errmsg());
        sent(s);
    }
    if (rc == 0 && ferror(stdin)) status = sends_failed(s, 1, no + 1, NULL);
    free(line);
    if (s->both && status == 0 && rc == 0 && may_send(s)) {
        shmrpc_stream_done(s->st);
        sent(s);
    }
    if (s->both) pthread_mutex_lock(&s->mu);
    s->ended = true;
    if (s->both) pthread_mutex_unlock(&s->mu);
    return status;
}

static void *send_thread(void *arg)
{
    send_lines(arg);
    return NULL;
}

/* Whether s's sends failed (and said so): the receives' failure that follows is theirs. */
static bool sends_said(sender *s)
{
    if (s == NULL) return false;
    pthread_mutex_lock(&s->mu);
    bool failed = s->status != 0;
    pthread_mutex_unlock(&s->mu);
    return failed;
}

/* Prints each item of st as a line of JSON as it comes (docs/streams.md); its end's status
 * then says how it ended: 0 once every item came, 1 when it failed (said on stderr, after the
 * items that came, unless the sends of s failed first and said why). */
static int print_items(shmrpc_stream *st, const shmrpc_dyn_sig *sig, const char *method, sender *s)
{
    int rc;
    shmrpc_buf line;
    shmrpc_buf_init(&line);
    shmrpc_bytes item;
    int status = 0;
    while (status == 0 && (rc = shmrpc_stream_recv(st, &item)) == 1) {
        shmrpc_buf_clear(&line);
        if (shmrpc_dyn_decode_item(sig, item.ptr, item.len, &line) != 0) {
            said_why(method);
            status = 1;
            break;
        }
        shmrpc_buf_append(&line, "\n", 1);
        /* Each as it comes: a stream may take its time, and a reader of the pipe its items. */
        if (line.err || fwrite(line.data, 1, line.len, stdout) != line.len || fflush(stdout) != 0)
            status = 1;
    }
    if (status == 0 && rc != 0) {
        if (!sends_said(s)) said_failed(method, rc);
        status = 1;
    }
    shmrpc_buf_destroy(&line);
    return status;
}

/* Opens the stream of method m, whose result streams (its request in c's), and prints its
 * items (print_items). */
static int call_stream(shmrpc_client *c, const shmrpc_method_info *m, const shmrpc_dyn_sig *sig,
                       const char *method)
{
    shmrpc_stream *st = opened(c, m, method);
    if (st == NULL) return 1;
    int status = print_items(st, sig, method, NULL);
    shmrpc_stream_close(st);
    return status;
}

/* Opens the stream of method m, whose parameter streams (its request, with no argument, in
 * c's), sends each line of stdin as an item (send_lines), then prints its answer as a call's.
 * A line that is no item of the method closes the stream (its handler is told) and is status
 * 2, naming the line; a stream that fails, 1. */
static int call_items(shmrpc_client *c, const shmrpc_method_info *m, const shmrpc_dyn_sig *sig,
                      const char *method)
{
    sender s = {.c = c, .st = opened(c, m, method), .sig = sig, .method = method};
    if (s.st == NULL) return 1;
    int status = send_lines(&s), rc;
    shmrpc_bytes answer;
    if (status == 0 && (rc = shmrpc_stream_answer(s.st, &answer)) != 0) {
        said_failed(method, rc);
        status = 1;
    }
    if (status == 0) status = print_answer(sig, method, answer);
    shmrpc_stream_close(s.st); /* before the end, it tells the handler */
    return status;
}

/* Opens the stream of method m, which streams both ways, and sends stdin's lines from a
 * thread of their own (send_lines) while this one prints the items (print_items). Once the
 * items ended, the sends stop: a line not sent yet is not, and the process exits even while
 * that thread waits for stdin. The status is the sends' when they failed first, else the
 * items'. */
static int call_both(shmrpc_client *c, const shmrpc_method_info *m, const shmrpc_dyn_sig *sig,
                     const char *method)
{
    /* Static: a thread that waits for stdin may outlive this call (it then sends nothing). */
    static sender s;
    s = (sender){.c = c, .st = opened(c, m, method), .sig = sig, .method = method, .both = true};
    if (s.st == NULL) return 1;
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, send_thread, &s) != 0) {
        fprintf(stderr, "shmrpcctl: %s: cannot start the thread of the sends\n", method);
        shmrpc_stream_close(s.st);
        return 1;
    }
    int status = print_items(s.st, sig, method, &s);
    pthread_mutex_lock(&s.mu);
    s.over = true;
    /* A send ends once the stream did; one that waits for room when the items stopped here
     * (an item that does not decode, stdout closed) is cancelled. */
    if (s.sending) shmrpc_client_cancel(c);
    while (s.sending)
        pthread_cond_wait(&s.cv, &s.mu);
    bool ended = s.ended;
    if (s.status != 0) status = s.status;
    pthread_mutex_unlock(&s.mu);
    if (ended)
        pthread_join(t, NULL);
    else
        pthread_detach(t);
    shmrpc_stream_close(s.st); /* before the end, it tells the handler */
    return status;
}

int ctl_call_main(int argc, char **argv)
{
    ctl_opts o;
    ctl_opts_init(&o);
    int parsed = ctl_client_options(argc, argv, CTL_OPT_TRACE, USAGE, &o);
    if (parsed >= 0) return parsed;
    const char *trace = o.trace;
    int i = optind;
    if (argc - i < 2 || argc - i > 3) return shmrpc__usage(false, USAGE);
    const char *addr = argv[i], *method = argv[i + 1];
    const char *args_text = argc - i == 3 ? argv[i + 2] : "[]";
    size_t args_len = strlen(args_text);
    char *stdin_args = NULL;

    shmrpc_dyn *d = NULL;
    int status = 1, rc;
    if ((rc = shmrpc_dyn_new(&d, &o.client)) != 0) {
        fprintf(stderr, "shmrpcctl: call: %s\n", shmrpc_strerror(rc));
        status = 2;
        goto done;
    }
    if ((rc = shmrpc_dyn_connect(d, addr)) != 0) {
        status = connect_failed(addr, rc, shmrpc_errmsg());
        if (rc == SHMRPC_EINVAL) status = 2;
        goto done;
    }
    const shmrpc_method_info *m;
    const shmrpc_dyn_sig *sig;
    if ((rc = shmrpc_dyn_method(d, method, &m, &sig)) != 0) {
        if (rc == SHMRPC_ENOENT) { /* it names the service and methods the server's table has */
            fputs("shmrpcctl: ", stderr);
            ctl_put_safe(stderr, shmrpc_errmsg());
            fputc('\n', stderr);
            status = 2;
        } else if (m != NULL) {
            fprintf(stderr, "shmrpcctl: %s: cannot read its ", method);
            ctl_put_safe(stderr, shmrpc_errmsg());
            fputs("\n  ", stderr);
            ctl_put_safe(stderr, m->signature);
            fputc('\n', stderr);
        } else {
            said_why(method);
        }
        goto done;
    }
    if (strcmp(args_text, "-") == 0) {
        if (sig->client_stream) {
            fprintf(stderr,
                    "shmrpcctl: %s: the method takes its items from stdin, not its arguments "
                    "('-')\n",
                    method);
            status = 2;
            goto done;
        }
        if ((stdin_args = read_stdin(&args_len)) == NULL) {
            fprintf(stderr, "shmrpcctl: call: cannot read the arguments from stdin\n");
            status = 2;
            goto done;
        }
        args_text = stdin_args;
    }
    shmrpc_client *c = shmrpc_dyn_client(d);
    if (shmrpc_dyn_encode_args(sig, args_text, args_len, shmrpc_client_request(c)) != 0) {
        fprintf(stderr, "shmrpcctl: %s: %s\n", method, shmrpc_errmsg());
        status = 2;
        goto done;
    }
    if (trace) { /* said before the call, so that a failed one can be found in the trace too */
        char fresh[SHMRPC_TRACEPARENT_SIZE];
        if (*trace == 0) shmrpc_traceparent_new(fresh);
        const char *tp = *trace ? trace : fresh;
        if ((rc = shmrpc_client_metadata_set(c, "traceparent", tp)) != 0) {
            fprintf(stderr, "shmrpcctl: call: --trace: %s\n", shmrpc_errmsg());
            status = 2;
            goto done;
        }
        fprintf(stderr, "traceparent: %s\n", tp);
    }
    if (sig->server_stream || sig->client_stream) {
        status = !sig->client_stream   ? call_stream(c, m, sig, method)
                 : !sig->server_stream ? call_items(c, m, sig, method)
                                       : call_both(c, m, sig, method);
        goto done;
    }
    shmrpc_bytes resp;
    if ((rc = shmrpc_client_call(c, m->id, &resp)) != 0) {
        said_failed(method, rc);
        goto done;
    }
    status = print_answer(sig, method, resp);
done:
    shmrpc_dyn_free(d);
    free(stdin_args);
    return status;
}
