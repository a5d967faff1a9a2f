/* SPDX-License-Identifier: MIT */
/* Unit tests of the .svc front end: the tree that DESIGN.md's example and its extended
 * form produce, enum numbering, docs, and the C naming helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "svc.h"

static const char design_example[] = "/// Echoes what it is given; the smallest useful service.\n"
                                     "service Echo {\n"
                                     "    port 5555;\n"
                                     "    name \"echo_serv\";\n"
                                     "\n"
                                     "    struct Point { f64 x; f64 y; string? label; }\n"
                                     "\n"
                                     "    @raw  bytes  echo_raw(bytes data);\n"
                                     "    @json string echo_json(string text);\n"
                                     "          i64    add(i64 a, i64 b);\n"
                                     "          Point  centroid(list<Point> points);\n"
                                     "}\n";

static const char full_example[] = "service Echo {\n"
                                   "    port 5555;\n"
                                   "    name \"echo_serv\";\n"
                                   "    struct Point { f64 x; f64 y; string? label; }\n"
                                   "    /// Colours.\n"
                                   "    enum Color {\n"
                                   "        red,\n"
                                   "        /// Five.\n"
                                   "        green = 5, blue, cyan = -0x10, magenta,\n"
                                   "    }\n"
                                   "    /// Pings.\n"
                                   "    /// Twice.\n"
                                   "    void ping();\n"
                                   "    /// Maps.\n"
                                   "    map<string, list<i64>> m(Color? c, /// the points\n"
                                   "                             map<i32, Point> pts);\n"
                                   "}\n";

/* The tree and the arena it lives in, parsed and checked without errors. */
typedef struct parsed {
    svc_arena *a;
    svc_file *f;
    char *errs;
    size_t errs_len;
} parsed;

static parsed parse_ok(const char *src)
{
    parsed p = {0};
    p.a = svc_arena_new();
    assert_non_null(p.a);
    FILE *out = open_memstream(&p.errs, &p.errs_len);
    assert_non_null(out);
    svc_diag d;
    svc_diag_init(&d, out, "t.svc", src, strlen(src));
    p.f = svc_parse(p.a, &d, "t.svc", src, strlen(src));
    bool ok = p.f && svc_check(p.a, &d, p.f);
    fclose(out);
    if (!ok) fprintf(stderr, "%s", p.errs);
    assert_true(ok);
    assert_int_equal(d.errors, 0);
    return p;
}

static void parsed_free(parsed *p)
{
    svc_arena_free(p->a);
    free(p->errs);
}

static void assert_tok(svc_tok t, const char *text)
{
    assert_int_equal(t.n, (int)strlen(text));
    assert_memory_equal(t.p, text, strlen(text));
}

static svc_method *method_at(svc_service *s, int i)
{
    svc_method *m = s->methods;
    while (m && i--)
        m = m->next;
    assert_non_null(m);
    return m;
}

static void test_design_example(void **state)
{
    (void)state;
    parsed p = parse_ok(design_example);
    svc_service *s = p.f->service;
    assert_non_null(s);
    assert_tok(s->name, "Echo");
    assert_int_equal(s->name.line, 2);
    assert_int_equal(s->name.col, 9);
    assert_string_equal(s->doc, "Echoes what it is given; the smallest useful service.");
    assert_true(s->has_port);
    assert_int_equal(s->port, 5555);
    assert_tok(s->port_tok, "5555");
    assert_true(s->has_name);
    assert_string_equal(s->svc_name, "echo_serv");
    assert_tok(s->name_tok, "\"echo_serv\"");

    assert_int_equal(s->n_decls, 1);
    svc_decl *pt = s->decls;
    assert_int_equal(pt->kind, SVC_DECL_STRUCT);
    assert_tok(pt->name, "Point");
    assert_null(pt->doc);
    assert_int_equal(pt->n_fields, 3);
    svc_field *x = pt->fields, *y = x->next, *label = y->next;
    assert_tok(x->name, "x");
    assert_int_equal(x->type->kind, SVC_T_F64);
    assert_tok(y->name, "y");
    assert_int_equal(y->type->kind, SVC_T_F64);
    assert_tok(label->name, "label");
    assert_int_equal(label->type->kind, SVC_T_OPTIONAL);
    assert_int_equal(label->type->elem->kind, SVC_T_STRING);
    assert_tok(label->type->tok, "string?");
    assert_null(label->next);

    assert_int_equal(s->n_methods, 4);
    svc_method *raw = method_at(s, 0), *json = method_at(s, 1), *add = method_at(s, 2),
               *cen = method_at(s, 3);
    assert_tok(raw->name, "echo_raw");
    assert_int_equal(raw->enc, SVC_ENC_RAW);
    assert_tok(raw->annots->name, "raw");
    assert_null(raw->annots->next);
    assert_int_equal(raw->result->kind, SVC_T_BYTES);
    assert_int_equal(raw->n_params, 1);
    assert_tok(raw->params->name, "data");
    assert_int_equal(raw->params->type->kind, SVC_T_BYTES);

    assert_tok(json->name, "echo_json");
    assert_int_equal(json->enc, SVC_ENC_JSON);
    assert_int_equal(json->result->kind, SVC_T_STRING);

    assert_tok(add->name, "add");
    assert_int_equal(add->enc, SVC_ENC_MSGPACK);
    assert_null(add->annots);
    assert_int_equal(add->result->kind, SVC_T_I64);
    assert_int_equal(add->n_params, 2);
    assert_tok(add->params->name, "a");
    assert_tok(add->params->next->name, "b");
    assert_int_equal(add->params->next->type->kind, SVC_T_I64);
    assert_int_equal(add->name.line, 10);
    assert_int_equal(add->name.col, 18);

    assert_tok(cen->name, "centroid");
    assert_int_equal(cen->result->kind, SVC_T_NAMED);
    assert_ptr_equal(cen->result->decl, pt);
    svc_type *pts = cen->params->type;
    assert_int_equal(pts->kind, SVC_T_LIST);
    assert_tok(pts->tok, "list");
    assert_int_equal(pts->elem->kind, SVC_T_NAMED);
    assert_ptr_equal(pts->elem->decl, pt);
    assert_null(cen->next);
    parsed_free(&p);
}

static void test_full_example(void **state)
{
    (void)state;
    parsed p = parse_ok(full_example);
    svc_service *s = p.f->service;
    assert_int_equal(s->n_decls, 2);
    svc_decl *color = s->decls->next;
    assert_int_equal(color->kind, SVC_DECL_ENUM);
    assert_string_equal(color->doc, "Colours.");
    assert_int_equal(color->n_values, 5);
    static const int64_t want[] = {0, 5, 6, -16, -15};
    static const char *const names[] = {"red", "green", "blue", "cyan", "magenta"};
    int i = 0;
    for (svc_enumval *v = color->values; v; v = v->next, i++) {
        assert_tok(v->name, names[i]);
        assert_int_equal(v->value, want[i]);
        assert_int_equal(v->explicit_value, i == 1 || i == 3);
    }
    assert_tok(color->values->next->value_tok, "5");
    assert_string_equal(color->values->next->doc, "Five.");
    assert_null(color->values->doc);

    svc_method *ping = s->methods, *m = ping->next;
    assert_string_equal(ping->doc, "Pings.\nTwice.");
    assert_int_equal(ping->result->kind, SVC_T_VOID);
    assert_int_equal(ping->n_params, 0);
    assert_null(ping->params);

    assert_string_equal(m->doc, "Maps.");
    svc_type *r = m->result;
    assert_int_equal(r->kind, SVC_T_MAP);
    assert_int_equal(r->key->kind, SVC_T_STRING);
    assert_int_equal(r->elem->kind, SVC_T_LIST);
    assert_int_equal(r->elem->elem->kind, SVC_T_I64);
    assert_string_equal(svc_type_str(p.a, r), "map<string, list<i64>>");
    svc_field *c = m->params, *pts = c->next;
    assert_int_equal(c->type->kind, SVC_T_OPTIONAL);
    assert_ptr_equal(c->type->elem->decl, color);
    assert_null(c->doc);
    assert_string_equal(pts->doc, "the points");
    assert_int_equal(pts->type->kind, SVC_T_MAP);
    assert_int_equal(pts->type->key->kind, SVC_T_I32);
    assert_ptr_equal(pts->type->elem->decl, s->decls);
    parsed_free(&p);
}

/* Options are kept in source order; the first port and name fill the service's fields. */
static void test_options(void **state)
{
    (void)state;
    const char *src = "service S { name \"a\\\"b\\\\c\\n\\t\"; port 0x10; port 7; mode 1; }";
    svc_arena *a = svc_arena_new();
    svc_diag d;
    svc_diag_init(&d, NULL, "t.svc", src, strlen(src));
    svc_file *f = svc_parse(a, &d, "t.svc", src, strlen(src));
    assert_non_null(f);
    assert_int_equal(d.errors, 0);
    svc_service *s = f->service;
    assert_string_equal(s->svc_name, "a\"b\\c\n\t");
    assert_int_equal(s->port, 16);
    assert_tok(s->port_tok, "0x10");
    svc_option *o = s->options;
    assert_tok(o->name, "name");
    assert_true(o->is_string);
    assert_tok(o->next->name, "port");
    assert_tok(o->next->next->value, "7");
    assert_tok(o->next->next->next->name, "mode");
    assert_false(o->next->next->next->is_string);
    assert_null(o->next->next->next->next);
    /* hex port, bad name, repeated port, unknown option */
    assert_false(svc_check(a, &d, f));
    assert_int_equal(d.errors, 4);
    svc_arena_free(a);
}

/* Doc comments: runs of /// lines, an empty one kept, //// and other comments ignored,
 * a doc before an annotation documenting the method, one before '}' dropped. */
static void test_docs(void **state)
{
    (void)state;
    parsed p = parse_ok("//// not a doc\n"
                        "/// Svc.\n"
                        "///Two.\n"
                        "service S { port 1; name \"s\";\n"
                        "  /// A.\n"
                        "  ///\n"
                        "  ///   indented\r\n"
                        "  struct A { /// X.\n"
                        "    /* between */ i64 x; f64 y; }\n"
                        "  /// M.\n"
                        "  @json // plain\n"
                        "  /// ignored: not directly before the method\n"
                        "  i64 m(/// P.\n"
                        "        i64 p);\n"
                        "  /// dropped\n"
                        "}\n");
    svc_service *s = p.f->service;
    assert_string_equal(s->doc, "Svc.\nTwo.");
    svc_decl *a = s->decls;
    assert_string_equal(a->doc, "A.\n\n  indented");
    assert_string_equal(a->fields->doc, "X.");
    assert_null(a->fields->next->doc);
    assert_string_equal(s->methods->doc, "M.");
    assert_string_equal(s->methods->params->doc, "P.");
    parsed_free(&p);
}

static void test_snake_upper(void **state)
{
    (void)state;
    svc_arena *a = svc_arena_new();
    static const char *const cases[][2] = {
        {"EchoService", "echo_service"},
        {"HTTPServer", "http_server"},
        {"echo_raw", "echo_raw"},
        {"getX", "get_x"},
        {"Point3D", "point3_d"},
        {"X", "x"},
        {"ABC", "abc"},
        {"Echo_Raw", "echo_raw"},
        {"ID2Name", "id2_name"},
        {"parseHTTP", "parse_http"},
        {"a1b2", "a1b2"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_string_equal(svc_snake(a, cases[i][0], -1), cases[i][1]);
    assert_string_equal(svc_snake(a, "EchoServiceXYZ", 11), "echo_service");
    assert_string_equal(svc_upper(a, "echo_service"), "ECHO_SERVICE");
    assert_string_equal(svc_upper(a, "point3_d"), "POINT3_D");
    assert_true(svc_is_c_keyword("_Bool", 5));
    assert_true(svc_is_c_keyword("NULL", 4));
    assert_false(svc_is_c_keyword("integer", 7));
    svc_arena_free(a);
}

static void test_arena(void **state)
{
    (void)state;
    svc_arena *a = svc_arena_new();
    for (size_t n = 0; n < 300000; n = n * 3 + 1) {
        unsigned char *p = svc_arena_alloc(a, n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(p[i], 0);
        memset(p, 0xab, n);
    }
    assert_string_equal(svc_arena_strndup(a, "hello", 3), "hel");
    assert_string_equal(svc_arena_printf(a, "%s-%d", "x", 42), "x-42");
    assert_null(svc_arena_alloc(a, SIZE_MAX));
    svc_arena_free(a);
}

/* The diagnostics' layout: position, message, the line, a caret under the column. */
static void test_error_layout(void **state)
{
    (void)state;
    const char *src = "service S {\n\tport 1; name \"s\";\n\tPont p();\n}\n";
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    svc_arena *a = svc_arena_new();
    svc_diag d;
    svc_diag_init(&d, out, "x.svc", src, strlen(src));
    svc_file *f = svc_parse(a, &d, "x.svc", src, strlen(src));
    assert_non_null(f);
    assert_false(svc_check(a, &d, f));
    fclose(out);
    assert_int_equal(d.errors, 1);
    assert_string_equal(buf, "x.svc:3:2: error: unknown type 'Pont'\n\tPont p();\n\t^\n");
    free(buf);
    svc_arena_free(a);
}

static void test_load_missing_file(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    svc_arena *a = svc_arena_new();
    int n = 0;
    assert_null(svc_load(a, out, "/nonexistent/x.svc", &n));
    fclose(out);
    assert_int_equal(n, 1);
    assert_string_equal(buf, "/nonexistent/x.svc: error: cannot read: No such file or directory\n");
    free(buf);
    svc_arena_free(a);
}

/* A FIFO given as the .svc file: fopen() would wait for a writer that never comes. The
 * alarm turns such a hang into a failure. */
static void test_load_fifo(void **state)
{
    (void)state;
    char dir[] = "/tmp/shmrpc-idl-test-XXXXXX", path[64], want[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/x.svc", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    svc_arena *a = svc_arena_new();
    int n = 0;
    alarm(10);
    svc_file *f = svc_load(a, out, path, &n);
    alarm(0);
    fclose(out);
    unlink(path);
    rmdir(dir);
    assert_null(f);
    assert_int_equal(n, 1);
    snprintf(want, sizeof want, "%s: error: cannot read: a FIFO, not a regular file\n", path);
    assert_string_equal(buf, want);
    free(buf);
    svc_arena_free(a);
}

/* A service built of counted parts; what the checks say about it (NULL: no errors). */
typedef struct built {
    char *src;
    size_t len;
    FILE *f;
} built;

static void build_begin(built *b)
{
    b->f = open_memstream(&b->src, &b->len);
    fputs("service S {\n port 1; name \"s\";\n", b->f);
}

/* The first error's message line, or NULL when the file checked out. */
static char *build_check(built *b, int *nerrors)
{
    fputs("}\n", b->f);
    fclose(b->f);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    svc_arena *a = svc_arena_new();
    svc_diag d;
    svc_diag_init(&d, out, "t.svc", b->src, b->len);
    svc_file *f = svc_parse(a, &d, "t.svc", b->src, b->len);
    assert_non_null(f);
    svc_check(a, &d, f);
    fclose(out);
    *nerrors = d.errors;
    svc_arena_free(a);
    free(b->src);
    if (d.errors == 0) {
        free(buf);
        return NULL;
    }
    char *nl = strchr(buf, '\n');
    if (nl) *nl = '\0';
    return buf;
}

/* The checks cap what the generator will walk: at the limit a file passes, one past it
 * fails with one message at the first thing too many, and nothing else is checked. */
static void test_limits(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        int limit;
        const char *msg; /* for limit + 1 */
    } cases[] = {
        {"types", SVC_MAX_TYPES, "t.svc:10003:9: error: too many types (limit 10000)"},
        {"methods", SVC_MAX_METHODS, "t.svc:10003:7: error: too many methods (limit 10000)"},
        {"fields", SVC_MAX_MEMBERS, "t.svc:10004:6: error: too many fields in 'F' (limit 10000)"},
        {"params", SVC_MAX_MEMBERS,
         "t.svc:10004:6: error: too many parameters in 'f' (limit 10000)"},
        {"values", SVC_MAX_MEMBERS, "t.svc:10004:1: error: too many values in 'E' (limit 10000)"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        for (int extra = 0; extra <= 1; extra++) {
            int n = cases[k].limit + extra;
            built b;
            build_begin(&b);
            if (k == 2) fputs("struct F {\n", b.f);
            if (k == 3) fputs("void f(\n", b.f);
            if (k == 4) fputs("enum E {\n", b.f);
            for (int i = 0; i < n; i++) {
                switch (k) {
                case 0:
                    fprintf(b.f, " struct T%d { }\n", i);
                    break;
                case 1:
                    fprintf(b.f, " void m%d();\n", i);
                    break;
                case 2:
                    fprintf(b.f, " i64 f%d;\n", i);
                    break;
                case 3:
                    fprintf(b.f, "%si64 p%d\n", i ? "," : " ", i);
                    break;
                default:
                    fprintf(b.f, "v%d,\n", i);
                    break;
                }
            }
            if (k == 2 || k == 4) fputs("}\n", b.f);
            if (k == 3) fputs(");\n", b.f);
            int nerrors;
            char *msg = build_check(&b, &nerrors);
            if (extra == 0 && k == 3) {
                /* The cap lets 10000 parameters through, but their signature cannot cross
                 * tcp:// (test_wire_limits): the one error is that one. */
                assert_non_null(msg);
                assert_string_equal(msg, "t.svc:3:6: error: the signature of 'f' is longer than "
                                         "65535 bytes, the most tcp:// carries (fewer "
                                         "parameters, or shorter names, would fit)");
                assert_int_equal(nerrors, 1);
            } else if (extra == 0) {
                if (msg) fail_msg("%s at the limit: %s", cases[k].what, msg);
            } else {
                assert_non_null(msg);
                assert_string_equal(msg, cases[k].msg);
                assert_int_equal(nerrors, 1);
            }
            free(msg);
        }
    }
}

/* Writes method `name` with parameters i64 NAME... whose signature,
 * "NAME(i64 P,...)->void @msgpack", is exactly len bytes (len >= 30). */
static void method_of_signature(FILE *f, const char *name, size_t len)
{
    size_t cur = strlen(name) + strlen("()->void @msgpack");
    fprintf(f, " void %s(", name);
    for (int i = 0; cur < len; i++) {
        size_t sep = i ? 1 : 0, rem = len - cur - sep - 4, n = rem > 255 ? 255 : rem;
        if (rem > 255 && rem - 255 < 7) n = rem - 7; /* room for one more: ",i64 " and 2 */
        char p[256];
        snprintf(p, sizeof p, "%c%c", 'a' + i % 26, 'a' + i / 26 % 26);
        memset(p + 2, 'x', n - 2);
        p[n] = '\0';
        fprintf(f, "%si64 %s", sep ? "," : "", p);
        cur += sep + 4 + n;
    }
    fputs(");\n", f);
}

/* What tcp:// carries (docs/wire.md) bounds what compiles: a signature of 65535 bytes
 * passes and one of 65536 fails at its method; a method table past the 1 MiB of a
 * handshake fails at the service's name. */
static void test_wire_limits(void **state)
{
    (void)state;
    for (size_t len = 65535; len <= 65536; len++) {
        built b;
        build_begin(&b);
        method_of_signature(b.f, "f", len);
        int nerrors;
        char *msg = build_check(&b, &nerrors);
        if (len == 65535) {
            if (msg) fail_msg("a signature of 65535 bytes: %s", msg);
        } else {
            assert_non_null(msg);
            assert_string_equal(msg, "t.svc:3:7: error: the signature of 'f' is longer than "
                                     "65535 bytes, the most tcp:// carries (fewer parameters, "
                                     "or shorter names, would fit)");
            assert_int_equal(nerrors, 1);
        }
        free(msg);
    }
    for (int n = 15; n <= 17; n += 2) { /* 15 or 17 signatures of 65000 bytes */
        built b;
        build_begin(&b);
        for (int i = 0; i < n; i++) {
            char name[16];
            snprintf(name, sizeof name, "m%d", i);
            method_of_signature(b.f, name, 65000);
        }
        int nerrors;
        char *msg = build_check(&b, &nerrors);
        if (n == 15) {
            if (msg) fail_msg("15 methods of 65000 bytes: %s", msg);
        } else {
            assert_non_null(msg);
            assert_non_null(strstr(msg, "t.svc:1:9: error: the method table of 'S' needs up to "));
            assert_non_null(strstr(msg, "bytes of the tcp:// handshake, whose limit is 1048576"));
            assert_int_equal(nerrors, 1);
        }
        free(msg);
    }
}

/* A name longer than tcp:// carries is refused by the lexer, quickly, whatever it names:
 * a 1 MB one cost 1.5 s and 404 MB to compile. */
static void test_long_names(void **state)
{
    (void)state;
    static const char *const forms[] = {"void %s();\n", "struct %s { }\n", "struct T { i64 %s; }\n",
                                        "void f(i64 %s);\n", "enum E { %s }\n"};
    for (size_t k = 0; k < sizeof forms / sizeof forms[0]; k++) {
        for (size_t len = 255; len <= 256; len++) {
            char name[257];
            memset(name, 'n', len);
            name[len] = '\0';
            built b;
            build_begin(&b);
            fprintf(b.f, forms[k], name);
            int nerrors;
            char *msg = build_check(&b, &nerrors);
            if (len == 255) {
                if (msg) fail_msg("a name of 255 bytes in '%s': %s", forms[k], msg);
            } else {
                assert_non_null(msg);
                assert_non_null(
                    strstr(msg, ": error: name is 256 bytes long; the limit is 255 (the longest "
                                "tcp:// carries)"));
            }
            free(msg);
        }
    }
    /* A megabyte, as shmrpcgen reads it: one message, and no time to speak of (bounded
     * generously). */
    char dir[] = "/tmp/shmrpc-idl-test-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/big.svc", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("service S {\n port 1; name \"s\";\n void ", f);
    for (int i = 0; i < 1 << 20; i++)
        fputc('A', f);
    fputs("();\n}\n", f);
    fclose(f);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    svc_arena *a = svc_arena_new();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int nerrors = 0;
    assert_null(svc_load(a, out, path, &nerrors));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fclose(out);
    svc_arena_free(a);
    unlink(path);
    rmdir(dir);
    assert_int_equal(nerrors, 1);
    char want[160];
    snprintf(want, sizeof want,
             "%s:3:7: error: name is 1048576 bytes long; the limit is 255 (the longest tcp:// "
             "carries)\n",
             path);
    assert_true(strncmp(buf, want, strlen(want)) == 0);
    free(buf);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("a 1 MiB name: refused in %.3f s\n", s);
    assert_true(s < 5.0);
}

/* stream<T> as a method's result or its one parameter: the tree keeps it, the checker
 * marks the method, and both signatures write it (the table's naming structs alone). */
static void test_streams(void **state)
{
    (void)state;
    parsed p = parse_ok("service T {\n port 1; name \"t\";\n"
                        " struct Tick { i64 at; }\n"
                        " stream<Tick> ticks(i64 n);\n"
                        " i64 sum(stream<i64> values);\n"
                        " @raw stream<bytes> both(stream<bytes> data);\n"
                        " list<i64> plain(list<i64> v);\n"
                        "}\n");
    svc_service *s = p.f->service;
    static const struct {
        bool server, client;
        const char *sig, *table;
    } want[] = {
        {true, false, "ticks(i64 n)->stream<struct Tick{i64 at;}> @msgpack",
         "ticks(i64 n)->stream<struct Tick> @msgpack"},
        {false, true, "sum(stream<i64> values)->i64 @msgpack", NULL},
        {true, true, "both(stream<bytes> data)->stream<bytes> @raw", NULL},
        {false, false, "plain(list<i64> v)->list<i64> @msgpack", NULL},
    };
    for (int i = 0; i < 4; i++) {
        const svc_method *m = method_at(s, i);
        assert_int_equal(m->server_stream, want[i].server);
        assert_int_equal(m->client_stream, want[i].client);
        assert_string_equal(svc_signature(p.a, m, 4096, NULL), want[i].sig);
        assert_string_equal(svc_table_signature(p.a, m, 4096, NULL),
                            want[i].table ? want[i].table : want[i].sig);
    }
    assert_int_equal(method_at(s, 0)->result->kind, SVC_T_STREAM);
    assert_int_equal(method_at(s, 0)->result->elem->kind, SVC_T_NAMED);
    assert_string_equal(svc_type_str(p.a, method_at(s, 1)->params->type), "stream<i64>");
    /* The table's types: Tick, reached through the stream. */
    int n = 0;
    const svc_decl **types = svc_table_types(p.a, s, &n);
    assert_int_equal(n, 1);
    assert_tok(types[0]->name, "Tick");
    parsed_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_design_example), cmocka_unit_test(test_full_example),
        cmocka_unit_test(test_options),        cmocka_unit_test(test_docs),
        cmocka_unit_test(test_snake_upper),    cmocka_unit_test(test_arena),
        cmocka_unit_test(test_error_layout),   cmocka_unit_test(test_load_missing_file),
        cmocka_unit_test(test_load_fifo),      cmocka_unit_test(test_limits),
        cmocka_unit_test(test_wire_limits),    cmocka_unit_test(test_long_names),
        cmocka_unit_test(test_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
