/* SPDX-License-Identifier: MIT */
/* The literals of a .svc file, read for the lexer, the tree builder and the checks: an
 * integer's value, a string's contents, and any token's text fit to quote in a message. */
#include <stdio.h>

#include "parse_int.h"

int svc_number(const char *p, int n, int64_t *out)
{
    bool neg = n > 0 && p[0] == '-';
    int i = neg, base = 10;
    if (n - i > 2 && p[i] == '0' && (p[i + 1] == 'x' || p[i + 1] == 'X')) {
        base = 16;
        i += 2;
    }
    if (i >= n) return -1;
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    bool big = false;
    for (; i < n; i++) {
        char c = p[i];
        unsigned dg;
        if (c >= '0' && c <= '9')
            dg = (unsigned)(c - '0');
        else if (base == 16 && c >= 'a' && c <= 'f')
            dg = (unsigned)(c - 'a' + 10);
        else if (base == 16 && c >= 'A' && c <= 'F')
            dg = (unsigned)(c - 'A' + 10);
        else
            return -1;
        if (v > (limit - dg) / (unsigned)base)
            big = true; /* keep going: a malformed number says so first */
        else
            v = v * (unsigned)base + dg;
    }
    if (big) return -2;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

char *svc_unquote(svc_arena *a, const char *p, int n)
{
    char *s = svc_arena_alloc(a, (size_t)(n > 0 ? n : 1));
    if (!s) return NULL;
    size_t o = 0;
    for (int i = 1; i < n && p[i] != '"'; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            c = p[++i];
            c = c == 'n' ? '\n' : c == 't' ? '\t' : c;
        }
        s[o++] = c;
    }
    s[o] = '\0';
    return s;
}

const char *svc_printable(svc_arena *a, const char *p, int n)
{
    char *s = svc_arena_alloc(a, (size_t)(n > 0 ? n : 0) * 4 + 1);
    if (!s) return NULL;
    char *o = s;
    for (int i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f)
            *o++ = (char)c;
        else
            o += sprintf(o, "\\x%02X", c);
    }
    *o = '\0';
    return s;
}
