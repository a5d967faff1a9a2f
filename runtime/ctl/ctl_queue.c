/* SPDX-License-Identifier: MIT */
/* shmrpcctl queue: stat prints a queue's geometry, type and counters; push, pop and peek
 * move one message, as JSON for a typed queue (converted by the library's dynamic codec
 * from the type signature the queue stores) or as bytes (stdin, stdout, or base64). */
#include "ctl_queue.h"

#include "ctl_bytes.h"
#include "ctl_opts.h"
#include "usage.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmrpc/buf.h>
#include <shmrpc/dynamic.h>
#include <shmrpc/queue.h>
#include <shmrpc/status.h>

#define USAGE                                                                                      \
    "usage: shmrpcctl queue stat [--json] NAME\n"                                                  \
    "       shmrpcctl queue push [--bytes|--base64] [--timeout MS] NAME [VALUE|-]\n"               \
    "       shmrpcctl queue pop  [--bytes|--base64] [--timeout MS] NAME\n"                         \
    "       shmrpcctl queue peek [--bytes|--base64] NAME\n"                                        \
    "       shmrpcctl queue repair NAME\n"

static int failed(const char *what, const char *name, int rc)
{
    fprintf(stderr, "shmrpcctl: queue %s %s: %s: %s\n", what, name, shmrpc_strerror(rc),
            shmrpc_errmsg());
    return 1;
}

/* Bad usage of a subcommand's options: "shmrpcctl: queue SUB: WHY" (ctl_usage_error). */
static int bad_option(const char *sub, const char *why)
{
    char cmd[32];
    snprintf(cmd, sizeof cmd, "queue %.20s", sub);
    return ctl_usage_error(cmd, why);
}

/* The queue's type, parsed; NULL for an untyped queue or when it does not parse (said). */
static const shmrpc_dyn_sig *queue_type(shmrpc_queue *q, shmrpc_dyn **d, const char *name)
{
    shmrpc_queue_info info;
    shmrpc_queue_get_info(q, &info);
    if (!*info.type) return NULL;
    const shmrpc_dyn_sig *sig = NULL;
    int rc = shmrpc_dyn_new(d, NULL);
    if (rc == 0) rc = shmrpc_dyn_sig_parse(*d, info.type, &sig);
    if (rc != 0) failed("type of", name, rc);
    return sig;
}

static int stat_queue(shmrpc_queue *q, const char *name, bool json)
{
    shmrpc_queue_info i;
    shmrpc_queue_stats s;
    int rc = shmrpc_queue_get_info(q, &i);
    if (rc == 0) rc = shmrpc_queue_get_stats(q, &s);
    if (rc != 0) return failed("stat", name, rc);
    const char *kind = i.kind == SHMRPC_QUEUE_BROADCAST
                           ? (i.slow == SHMRPC_QUEUE_SLOW_DROP ? "broadcast-drop" : "broadcast")
                           : "work";
    if (json) {
        shmrpc_buf t;
        shmrpc_buf_init(&t);
        for (const char *p = i.type; *p; p++) { /* signatures hold no control characters */
            if (*p == '"' || *p == '\\') shmrpc_buf_append(&t, "\\", 1);
            shmrpc_buf_append(&t, p, 1);
        }
        printf("{\"name\":\"%s\",\"kind\":\"%s\",\"capacity\":%" PRIu32 ",\"arena_bytes\":%" PRIu32
               ",\"max_msg\":%" PRIu32 ",\"creator\":%d,\"type\":\"%.*s\",\"depth\":%" PRIu64
               ",\"pushed\":%" PRIu64 ",\"popped\":%" PRIu64 ",\"timeouts\":%" PRIu64
               ",\"drops\":%" PRIu64 ",\"sleeps\":%" PRIu64 ",\"repairs\":%" PRIu64 "}\n",
               name, kind, i.capacity, i.arena_bytes, i.max_msg, (int)i.creator, (int)t.len,
               t.data ? (const char *)t.data : "", s.depth, s.pushed, s.popped, s.timeouts, s.drops,
               s.sleeps, s.repairs);
        shmrpc_buf_destroy(&t);
        return 0;
    }
    printf("queue     %s (/dev/shm/shmrpc.queue.%s)\n", name, name);
    printf("kind      %s\n", kind);
    printf("capacity  %" PRIu32 " messages, %" PRIu32 " bytes, messages up to %" PRIu32 " bytes\n",
           i.capacity, i.arena_bytes, i.max_msg);
    printf("creator   pid %d\n", (int)i.creator);
    printf("type      %s\n", *i.type ? i.type : "(untyped)");
    printf("depth     %" PRIu64 "\n", s.depth);
    printf("pushed    %" PRIu64 "\npopped    %" PRIu64 "\ntimeouts  %" PRIu64 "\ndrops     %" PRIu64
           "\nsleeps    %" PRIu64 "\nrepairs   %" PRIu64 "\n",
           s.pushed, s.popped, s.timeouts, s.drops, s.sleeps, s.repairs);
    return 0;
}

static int push(shmrpc_queue *q, const char *name, ctl_form f, int64_t ms, const char *value)
{
    shmrpc_buf in, msg;
    shmrpc_buf_init(&in);
    shmrpc_buf_init(&msg);
    shmrpc_dyn *d = NULL;
    int rc = 0, status = 0;
    if (value && strcmp(value, "-") != 0)
        rc = shmrpc_buf_append(&in, value, strlen(value));
    else
        rc = ctl_read_stdin(&in);
    const shmrpc_dyn_sig *sig = f == CTL_FORM_AUTO ? queue_type(q, &d, name) : NULL;
    if (rc != 0) {
        status = failed("push: reading", name, rc);
    } else if (f == CTL_FORM_AUTO && d && !sig) {
        status = 1; /* a type that does not parse, said */
    } else if (sig) {
        rc = shmrpc_dyn_encode_result(sig, (const char *)in.data, in.len, &msg);
        if (rc != 0) {
            fprintf(stderr, "shmrpcctl: queue push %s: %s\n", name, shmrpc_errmsg());
            status = 2;
        }
    } else if (f == CTL_FORM_BASE64) {
        if (!ctl_from_base64((const char *)in.data, in.len, &msg)) {
            fprintf(stderr, "shmrpcctl: queue push %s: not base64\n", name);
            status = 2;
        }
    } else {
        shmrpc_buf_append(&msg, in.data, in.len);
    }
    if (status == 0 && (rc = shmrpc_queue_push(q, msg.data, msg.len, ms)) != 0)
        status = failed("push", name, rc);
    shmrpc_dyn_free(d);
    shmrpc_buf_destroy(&in);
    shmrpc_buf_destroy(&msg);
    return status;
}

/* pop (take) or peek (look): prints the message as JSON, bytes or base64. */
static int take(shmrpc_queue *q, const char *name, ctl_form f, int64_t ms, bool look)
{
    shmrpc_queue_info info;
    shmrpc_queue_get_info(q, &info);
    size_t cap = info.max_msg, len = 0;
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf) return failed(look ? "peek" : "pop", name, SHMRPC_ENOMEM);
    int rc = look ? shmrpc_queue_look(q, buf, cap, &len) : shmrpc_queue_pop(q, buf, cap, &len, ms);
    int status = 0;
    shmrpc_dyn *d = NULL;
    if (rc != 0) {
        status = failed(look ? "peek" : "pop", name, rc);
    } else if (f == CTL_FORM_BASE64) {
        ctl_put_base64(buf, len);
    } else if (f == CTL_FORM_BYTES) {
        fwrite(buf, 1, len, stdout);
    } else {
        const shmrpc_dyn_sig *sig = queue_type(q, &d, name);
        if (sig) {
            shmrpc_buf out;
            shmrpc_buf_init(&out);
            if (shmrpc_dyn_decode_result(sig, buf, len, &out) == 0) {
                printf("%.*s\n", (int)out.len, (const char *)out.data);
            } else {
                fprintf(stderr, "shmrpcctl: queue %s %s: %s\n", look ? "peek" : "pop", name,
                        shmrpc_errmsg());
                status = 1;
            }
            shmrpc_buf_destroy(&out);
        } else if (d) {
            status = 1; /* said */
        } else {
            fwrite(buf, 1, len, stdout);
        }
    }
    shmrpc_dyn_free(d);
    free(buf);
    return fflush(stdout) == 0 ? status : 1;
}

/* Rebuilds the positions a bad write left where no step leads, and says what it did. */
static int repair(shmrpc_queue *q, const char *name)
{
    shmrpc_queue_repair_info r;
    int rc = shmrpc_queue_repair(q, &r);
    if (rc != 0) return failed("repair", name, rc);
    if (r.fixed == 0)
        printf("queue %s: every position is one that steps lead to; nothing to repair\n", name);
    else
        printf("queue %s: rebuilt from its slots:\n%s", name, r.what);
    return fflush(stdout) == 0 ? 0 : 1;
}

int ctl_queue_main(int argc, char **argv)
{
    if (argc < 2) return shmrpc__usage(false, USAGE);
    const char *sub = argv[1];
    if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0) return shmrpc__usage(true, USAGE);
    bool is_stat = strcmp(sub, "stat") == 0, is_push = strcmp(sub, "push") == 0,
         is_pop = strcmp(sub, "pop") == 0, is_peek = strcmp(sub, "peek") == 0,
         is_repair = strcmp(sub, "repair") == 0;
    if (!is_stat && !is_push && !is_pop && !is_peek && !is_repair)
        return ctl_usage_error("queue", "no such subcommand");
    ctl_opts op;
    ctl_opts_init(&op);
    unsigned takes = is_stat     ? CTL_OPT_JSON
                     : is_repair ? 0
                                 : CTL_OPT_FORM | (is_push || is_pop ? CTL_OPT_TIMEOUT : 0);
    /* After the subcommand: argv + 1 is its own list. */
    int i = 1 + ctl_opts_read(argc - 1, argv + 1, CTL_OPT_JSON | CTL_OPT_FORM | CTL_OPT_TIMEOUT,
                              takes, &op);
    if (i < 1) return bad_option(sub, op.why);
    if (op.help) return shmrpc__usage(true, USAGE);
    int rest = argc - i;
    if (rest < 1 || rest > (is_push ? 2 : 1)) return shmrpc__usage(false, USAGE);
    const char *name = argv[i];
    shmrpc_queue_opts o;
    shmrpc_queue_opts_init(&o);
    o.mode = SHMRPC_QUEUE_CONNECT_TO_EXISTING;
    char file[300];
    snprintf(file, sizeof file, "shmrpc.queue.%s", name);
    o.perms = ctl_perms_of(file);
    shmrpc_queue *q;
    int rc = shmrpc_queue_open(&q, name, &o);
    if (rc != 0) return failed("open", name, rc);
    int status;
    if (is_stat)
        status = stat_queue(q, name, op.json);
    else if (is_repair)
        status = repair(q, name);
    else if (is_push)
        status = push(q, name, op.form, op.ms, rest == 2 ? argv[i + 1] : NULL);
    else
        status = take(q, name, op.form, op.ms, is_peek);
    shmrpc_queue_close(q);
    return status;
}
