/* SPDX-License-Identifier: MIT */
/* The source line and its caret (caret.h). */
#include "caret.h"

#include "utf8.h"

/* Bytes to the sink a bufferful at a time. */
typedef struct sink {
    shmrpc__caret_put put;
    void *out;
    char buf[256];
    size_t n;
} sink;

static void flush(sink *k)
{
    if (k->n) k->put(k->out, k->buf, k->n);
    k->n = 0;
}

static void putc_(sink *k, char c)
{
    if (k->n == sizeof k->buf) flush(k);
    k->buf[k->n++] = c;
}

static void puts_(sink *k, const char *s)
{
    while (*s)
        putc_(k, *s++);
}

void shmrpc__caret(const char *s, size_t n, int col, shmrpc__caret_put put, void *out)
{
    sink k = {.put = put, .out = out};
    size_t at = (size_t)(col > 0 ? col - 1 : 0), ws = 0, we = n;
    if (n > SHMRPC__CARET_SHOWN) {
        ws = at > SHMRPC__CARET_SHOWN / 2 ? at - SHMRPC__CARET_SHOWN / 2 : 0;
        while (ws < n && ((unsigned char)s[ws] & 0xc0) == 0x80)
            ws++;
        we = ws + SHMRPC__CARET_SHOWN < n ? ws + SHMRPC__CARET_SHOWN : n;
        while (we < n && ((unsigned char)s[we] & 0xc0) == 0x80)
            we++;
    }
    if (ws > 0) puts_(&k, "...");
    /* Character by character: a valid UTF-8 sequence as it is, any other byte (and a C1
     * control) as '?', so that the terminal is given only printable UTF-8 and each
     * character takes one column. */
    for (size_t i = ws; i < we;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : shmrpc__utf8_seq_len(s + i, we - i);
        if (len == 0)
            putc_(&k, '?'), i++;
        else if (c == 0xc2 && (unsigned char)s[i + 1] < 0xa0) /* U+0080..U+009F: C1 controls */
            putc_(&k, '?'), i += 2;
        else if (len > 1)
            while (len--)
                putc_(&k, s[i++]);
        else
            putc_(&k, c == '\t' || (c >= 0x20 && c != 0x7f) ? (char)c : '?'), i++;
    }
    puts_(&k, we < n ? "...\n" : "\n");
    if (ws > 0) puts_(&k, "   ");
    for (size_t i = ws; i < at && i < we;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : shmrpc__utf8_seq_len(s + i, we - i);
        putc_(&k, c == '\t' ? '\t' : ' ');
        i += len ? len : 1;
    }
    puts_(&k, "^\n");
    flush(&k);
}
