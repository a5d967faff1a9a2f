/* SPDX-License-Identifier: MIT */
/* How .svc names become C names; the checks and the generator must agree on them. */
#include <string.h>

#include "svc.h"

static bool is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

static bool is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Whether p[i], an upper-case letter, begins a new word: after a lower-case letter or a
 * digit ("getX", "Point3D"), or as the last capital of an acronym ("HTTPServer"). */
static bool starts_word(const char *p, int n, int i)
{
    if (i == 0 || p[i - 1] == '_') return false;
    char prev = p[i - 1];
    if (is_lower(prev) || is_digit(prev)) return true;
    return is_upper(prev) && i + 1 < n && is_lower(p[i + 1]);
}

const char *svc_snake(svc_arena *a, const char *p, int n)
{
    if (n < 0) n = (int)strlen(p);
    char *s = svc_arena_alloc(a, (size_t)n * 2 + 1);
    if (!s) return NULL;
    char *o = s;
    for (int i = 0; i < n; i++) {
        char c = p[i];
        if (is_upper(c)) {
            if (starts_word(p, n, i)) *o++ = '_';
            c = (char)(c - 'A' + 'a');
        }
        *o++ = c;
    }
    *o = '\0';
    return s;
}

const char *svc_upper(svc_arena *a, const char *s)
{
    size_t n = strlen(s);
    char *u = svc_arena_alloc(a, n + 1);
    if (!u) return NULL;
    for (size_t i = 0; i < n; i++)
        u[i] = is_lower(s[i]) ? (char)(s[i] - 'a' + 'A') : s[i];
    return u;
}

const char *svc_cap(svc_arena *a, const char *p, int n)
{
    if (n < 0) n = (int)strlen(p);
    char *s = svc_arena_strndup(a, p, (size_t)n);
    if (s && is_lower(s[0])) s[0] = (char)(s[0] - 'a' + 'A');
    return s;
}

static bool in_list(const char *const *list, size_t n_list, const char *p, int n);

bool svc_is_c_keyword(const char *p, int n)
{
    static const char *const kw[] = {
        /* C11 */
        "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else",
        "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
        "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch", "typedef",
        "union", "unsigned", "void", "volatile", "while", "_Alignas", "_Alignof", "_Atomic",
        "_Bool", "_Complex", "_Generic", "_Imaginary", "_Noreturn", "_Static_assert",
        "_Thread_local",
        /* what <stdbool.h> and <stddef.h> define, and C23's new keywords */
        "bool", "true", "false", "NULL", "alignas", "alignof", "constexpr", "nullptr",
        "static_assert", "thread_local", "typeof", "typeof_unqual"};
    return in_list(kw, sizeof kw / sizeof kw[0], p, n);
}

/* Only these names can be lower case or plain words: the C standard's own, glibc's, and
 * what gcc and clang predefine for Linux on x86 in their GNU modes (the default). The
 * many upper-case macros of <stdint.h> (INT8_MAX...) are left out: nobody names a field
 * like that. docs/svc-language.md lists them. */
static bool in_list(const char *const *list, size_t n_list, const char *p, int n)
{
    for (size_t i = 0; i < n_list; i++)
        if (strlen(list[i]) == (size_t)n && memcmp(list[i], p, (size_t)n) == 0) return true;
    return false;
}

bool svc_is_c_macro(const char *p, int n)
{
    static const char *const macros[] = {
        "unix", "linux", "i386", "errno", "EOF", "NULL", "stdin", "stdout", "stderr", "assert",
        "offsetof", "bool", "true", "false",
        /* object-like, from <netinet/in.h>, which <msgpack.h> includes */
        "s6_addr", "s6_addr16", "s6_addr32"};
    return in_list(macros, sizeof macros / sizeof macros[0], p, n);
}

bool svc_is_c_type_name(const char *p, int n)
{
    static const char *const types[] = {"int8_t",   "int16_t",   "int32_t",  "int64_t", "uint8_t",
                                        "uint16_t", "uint32_t",  "uint64_t", "size_t",  "ptrdiff_t",
                                        "intptr_t", "uintptr_t", "FILE"};
    return in_list(types, sizeof types / sizeof types[0], p, n);
}

static const svc_builtin builtins[] = {
    {"void", SVC_T_VOID},     {"bool", SVC_T_BOOL},   {"i8", SVC_T_I8},     {"i16", SVC_T_I16},
    {"i32", SVC_T_I32},       {"i64", SVC_T_I64},     {"u8", SVC_T_U8},     {"u16", SVC_T_U16},
    {"u32", SVC_T_U32},       {"u64", SVC_T_U64},     {"f32", SVC_T_F32},   {"f64", SVC_T_F64},
    {"string", SVC_T_STRING}, {"bytes", SVC_T_BYTES}, {"list", SVC_T_LIST}, {"map", SVC_T_MAP},
    {"any", SVC_T_ANY},       {"stream", SVC_T_STREAM},
};

const svc_builtin *svc_builtin_by_name(const char *p, int n)
{
    if (n < 0) n = (int)strlen(p);
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (strlen(builtins[i].name) == (size_t)n && memcmp(builtins[i].name, p, (size_t)n) == 0)
            return &builtins[i];
    return NULL;
}

const svc_builtin *svc_builtins(size_t *n)
{
    *n = sizeof builtins / sizeof builtins[0];
    return builtins;
}

const char *svc_builtin_name(svc_type_kind kind)
{
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (builtins[i].kind == kind) return builtins[i].name;
    return NULL;
}

/* Never NULL, so that it can go straight into a format. */
static const char *type_str(svc_arena *a, const svc_type *t)
{
    const char *s = svc_type_str(a, t);
    return s ? s : "?";
}

const char *svc_type_str(svc_arena *a, const svc_type *t)
{
    if (!t) return "?";
    switch (t->kind) {
    case SVC_T_LIST:
        return svc_arena_printf(a, "list<%s>", type_str(a, t->elem));
    case SVC_T_MAP:
        return svc_arena_printf(a, "map<%s, %s>", type_str(a, t->key), type_str(a, t->elem));
    case SVC_T_OPTIONAL:
        return svc_arena_printf(a, "%s?", type_str(a, t->elem));
    case SVC_T_STREAM:
        return svc_arena_printf(a, "stream<%s>", type_str(a, t->elem));
    case SVC_T_NAMED:
        return svc_arena_strndup(a, t->tok.p, (size_t)t->tok.n);
    default: {
        const char *name = svc_builtin_name(t->kind);
        return name ? name : "?";
    }
    }
}
