/* SPDX-License-Identifier: MIT */
/* The project's one UTF-8 check (utf8.h): the library, the front end and the programs all
 * ask it. */
#include "utf8.h"

#include <string.h>

size_t shmrpc__utf8_invalid_at(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        /* ASCII, the common case (a call's metadata, keys, names), eight bytes at a time. */
        uint64_t w;
        if (n - i >= sizeof w) {
            memcpy(&w, p + i, sizeof w);
            if ((w & UINT64_C(0x8080808080808080)) == 0) {
                i += sizeof w;
                continue;
            }
        }
        unsigned char c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0) lo = 0xa0; /* overlong below U+0800 */
            if (c == 0xed) hi = 0x9f; /* U+D800..U+DFFF: surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0) lo = 0x90; /* overlong below U+10000 */
            if (c == 0xf4) hi = 0x8f; /* past U+10FFFF */
        } else {
            return i; /* a continuation byte, an overlong lead (C0, C1) or F5..FF */
        }
        if (n - i < len || p[i + 1] < lo || p[i + 1] > hi) return i;
        for (size_t k = 2; k < len; k++)
            if ((p[i + k] & 0xc0) != 0x80) return i;
        i += len;
    }
    return n;
}

size_t shmrpc__utf8_seq_len(const char *s, size_t n)
{
    unsigned char c = (unsigned char)s[0];
    size_t len = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
    return shmrpc__utf8_invalid_at(s, len < n ? len : n) == len ? len : 0;
}
