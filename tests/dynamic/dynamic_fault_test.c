/* SPDX-License-Identifier: MIT */
/* The dynamic codec (shmrpc/dynamic.h) with each of its allocations failing in turn
 * (common/faults.h): parsing a signature, encoding arguments and results, decoding a
 * result. Out of memory is SHMRPC_ENOMEM with a message, never a value the caller takes
 * for its own mistake (SHMRPC_EINVAL), a wrong value, a crash or a leak (LeakSanitizer, in
 * the ASan build, looks at each child's exit); the same call succeeds with the same bytes
 * once nothing fails. jansson's own allocations are not failed: its lexer drops a
 * character of the text when its buffer cannot grow and goes on (jansson issue #362, in
 * 2.14, Debian 12's), a wrong value no caller can tell; tried here, a u64 lost a digit. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <shmrpc.h>
#include <shmrpc/dynamic.h>

#include "faults.h"

#define RUNS_MAX 2000 /* far more allocations than any of these calls makes */

/* Every type of the language, in one parameter and the result. */
#define TYPES                                                                                      \
    "struct S{bool b;i8 i;u64 u;f32 f;f64 d;string s;bytes data;enum C{red=0,green=5} c;"          \
    "list<i32?> l;map<string,list<f64>> m;map<u16,bool> k;map<enum C,string> e;"                   \
    "struct N{i64 v;} n;}"
/* Fields enough that a signature outgrows the handle's first 4 KiB of memory. */
#define MANY(T)                                                                                    \
    "struct " T "{bool b1;i8 i1;u64 u1;f32 f1;f64 d1;string s1;bytes y1;enum C c1;list<i32?> l1;"  \
    "map<string,list<f64>> m1;map<u16,bool> k1;map<enum C,string> e1;struct N n1;"                 \
    "bool b2;i8 i2;u64 u2;f32 f2;f64 d2;string s2;bytes y2;enum C c2;list<i32?> l2;"               \
    "map<string,list<f64>> m2;map<u16,bool> k2;map<enum C,string> e2;struct N n2;}"
#define ARG                                                                                        \
    "{\"b\":true,\"i\":-8,\"u\":18446744073709551615,\"f\":0.5,\"d\":-2.25,"                       \
    "\"s\":\"h\xc3\xa9llo \\\"q\\\"\\n\",\"data\":\"AP8Q\",\"c\":\"green\",\"l\":[1,null,3],"      \
    "\"m\":{\"a\":[1.5],\"b\":[]},\"k\":{\"7\":true},\"e\":{\"red\":\"r\"},\"n\":{\"v\":-1}}"
#define ARG_JSON                                                                                   \
    "{\"b\":true,\"i\":-8,\"u\":9223372036854775807,\"f\":0.5,\"d\":-2.25,"                        \
    "\"s\":\"h\xc3\xa9llo \\\"q\\\"\\n\",\"data\":\"AP8Q\",\"c\":\"green\",\"l\":[1,null,3],"      \
    "\"m\":{\"a\":[1.5],\"b\":[]},\"k\":{\"7\":true},\"e\":{\"red\":\"r\"},\"n\":{\"v\":-1}}"

typedef struct dcase {
    const char *sig_text;
    const char *json; /* the arguments, or the value */
    shmrpc_dyn *d;
    const shmrpc_dyn_sig *sig;
    shmrpc_buf out;
    shmrpc_buf want; /* what the call writes when nothing fails */
    int (*call)(struct dcase *c);
} dcase;

static int encode_args(dcase *c)
{
    return shmrpc_dyn_encode_args(c->sig, c->json, strlen(c->json), &c->out);
}

static int encode_result(dcase *c)
{
    return shmrpc_dyn_encode_result(c->sig, c->json, strlen(c->json), &c->out);
}

/* Decodes what encode_result writes of c->json. */
static int decode_result(dcase *c)
{
    return shmrpc_dyn_decode_result(c->sig, c->want.data, c->want.len, &c->out);
}

static int parse(dcase *c)
{
    shmrpc_dyn *d;
    int rc = shmrpc_dyn_new(&d, NULL);
    if (rc != 0) return rc;
    rc = shmrpc_dyn_sig_parse(d, c->sig_text, &c->sig);
    shmrpc_dyn_free(d);
    return rc;
}

/* setup: the handle, the signature, and what the call writes when nothing fails (for a
 * decode, the body it reads: what encode_result writes of the value). */
static int setup(void *arg)
{
    dcase *c = arg;
    shmrpc_buf_init(&c->out);
    shmrpc_buf_init(&c->want);
    if (shmrpc_dyn_new(&c->d, NULL) != 0 || shmrpc_dyn_sig_parse(c->d, c->sig_text, &c->sig) != 0)
        return faults_say("setup: %s", shmrpc_errmsg());
    if (c->call == parse) return 0;
    int rc = c->call == decode_result
                 ? shmrpc_dyn_encode_result(c->sig, c->json, strlen(c->json), &c->want)
                 : c->call(c);
    if (rc != 0) return faults_say("setup: %s", shmrpc_errmsg());
    if (c->call != decode_result) {
        shmrpc_buf_append(&c->want, c->out.data, c->out.len);
        shmrpc_buf_clear(&c->out);
    }
    return 0;
}

static int run(void *arg)
{
    dcase *c = arg;
    return c->call(c);
}

static bool same(const shmrpc_buf *a, const shmrpc_buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* A failure is the allocation's ENOMEM with a message; a success wrote what it writes
 * when nothing fails; and the same call, again, does. */
static int check(void *arg, int rc)
{
    dcase *c = arg;
    int bad = 0;
    if (rc != 0 && !faults_status(rc)) bad = faults_say("(it said: %s)", shmrpc_errmsg());
    if (!bad && rc == 0 && c->call != parse && c->call != decode_result && !same(&c->out, &c->want))
        bad = faults_say("status 0, and not the bytes it writes when nothing fails");
    if (!bad) {
        shmrpc_buf_clear(&c->out);
        rc = c->call(c);
        if (rc != 0) bad = faults_say("again, unarmed: %s", shmrpc_errmsg());
        else if (c->call == encode_args || c->call == encode_result)
            bad = same(&c->out, &c->want) ? 0 : faults_say("again: other bytes");
    }
    shmrpc_buf_destroy(&c->out);
    shmrpc_buf_destroy(&c->want);
    shmrpc_dyn_free(c->d);
    return bad;
}

static void sweep(const char *what, const char *sig_text, const char *json, int (*call)(dcase *))
{
    dcase c = {.sig_text = sig_text, .json = json, .call = call};
    faults_case fc = {.name = what,
                      .which = "malloc,calloc,realloc,strdup",
                      .setup = setup,
                      .run = run,
                      .check = check,
                      .arg = &c};
    int fired = faults_sweep(&fc, RUNS_MAX);
    print_message("# %s: %d faults\n", what, fired);
    assert_true(fired >= 1);
}

static void parse_a_signature(void **state)
{
    (void)state;
    sweep("sig_parse",
          "x(" TYPES " a,list<struct S?> b," MANY("M1") " c," MANY("M2") " d," MANY("M3") " e," MANY(
              "M4") " f)->map<i64,struct S> @msgpack",
          NULL, parse);
}

static void encode_arguments(void **state)
{
    (void)state;
    sweep("encode_args msgpack", "x(" TYPES " a,i64? b)->void @msgpack", "[" ARG ",null]",
          encode_args);
    sweep("encode_args json", "x(" TYPES " a,i64? b)->void @json", "{\"a\":" ARG_JSON "}",
          encode_args);
}

static void encode_and_decode_results(void **state)
{
    (void)state;
    sweep("encode_result msgpack", "x()->" TYPES " @msgpack", ARG, encode_result);
    sweep("encode_result json", "x()->" TYPES " @json", ARG_JSON, encode_result);
    sweep("decode_result msgpack", "x()->" TYPES " @msgpack", ARG, decode_result);
    sweep("decode_result json", "x()->" TYPES " @json", ARG_JSON, decode_result);
    sweep("decode_result raw", "x()->bytes @raw", "{\"base64\":\"AP8Q\"}", decode_result);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_a_signature),
        cmocka_unit_test(encode_arguments),
        cmocka_unit_test(encode_and_decode_results),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
