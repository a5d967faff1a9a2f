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
    for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++)
        if (strlen(kw[i]) == (size_t)n && memcmp(kw[i], p, (size_t)n) == 0) return true;
    return false;
}

static const char *const scalar_names[] = {
    [SVC_T_VOID] = "void",     [SVC_T_BOOL] = "bool",   [SVC_T_I8] = "i8",   [SVC_T_I16] = "i16",
    [SVC_T_I32] = "i32",       [SVC_T_I64] = "i64",     [SVC_T_U8] = "u8",   [SVC_T_U16] = "u16",
    [SVC_T_U32] = "u32",       [SVC_T_U64] = "u64",     [SVC_T_F32] = "f32", [SVC_T_F64] = "f64",
    [SVC_T_STRING] = "string", [SVC_T_BYTES] = "bytes",
};

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
    case SVC_T_NAMED:
        return svc_arena_strndup(a, t->tok.p, (size_t)t->tok.n);
    default:
        return (size_t)t->kind < sizeof scalar_names / sizeof scalar_names[0] &&
                       scalar_names[t->kind]
                   ? scalar_names[t->kind]
                   : "?";
    }
}
