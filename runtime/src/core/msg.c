/* SPDX-License-Identifier: MIT */
/* Error messages kept in growable buffers, and the texts of decode errors. */
#include <stdio.h>

#include "core/core.h"

/* A message beyond this is truncated: it is meant for people, and a hostile peer must
 * not make us hold megabytes of it. */
#define MSG_MAX ((size_t)64 << 10)

void shmrpc__msg_clear(shmrpc_buf *m)
{
    shmrpc_buf_clear(m);
    if (m->cap) m->data[0] = '\0';
}

const char *shmrpc__msg_get(const shmrpc_buf *m)
{
    return m->len ? (const char *)m->data : "";
}

void shmrpc__msg_vappend(shmrpc_buf *m, const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    size_t room = m->cap > m->len ? m->cap - m->len : 0;
    int n = vsnprintf(room ? (char *)m->data + m->len : NULL, room, fmt, ap);
    if (n < 0) goto out;
    size_t want = (size_t)n + 1;
    if (want > room) {
        /* Grow to fit, then format again; when that fails keep what fitted. */
        size_t cap = m->len + want;
        if (cap > MSG_MAX) cap = MSG_MAX;
        m->err = 0;
        if (cap > m->len && shmrpc__buf_grow(m, cap - m->len) == 0) {
            room = m->cap - m->len;
            vsnprintf((char *)m->data + m->len, room, fmt, again);
        }
        m->err = 0;
        room = m->cap > m->len ? m->cap - m->len : 0;
        if (room == 0) goto out;
        if (want > room) want = room;
    }
    m->len += want - 1;
out:
    va_end(again);
}

void shmrpc__msg_append(shmrpc_buf *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    shmrpc__msg_vappend(m, fmt, ap);
    va_end(ap);
}

void shmrpc__msg_vset(shmrpc_buf *m, const char *fmt, va_list ap)
{
    shmrpc__msg_clear(m);
    shmrpc__msg_vappend(m, fmt, ap);
}

void shmrpc__msg_set(shmrpc_buf *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    shmrpc__msg_vset(m, fmt, ap);
    va_end(ap);
}

void shmrpc__decode_msg(char *out, size_t cap, const char *method, const char *what,
                        const char *field, const char *why)
{
    if (!why) why = "invalid";
    const char *m = method ? method : "";
    const char *ms = method ? ": " : "";
    if (what && field)
        snprintf(out, cap, "%s%s%s, field '%s': %s", m, ms, what, field, why);
    else if (what)
        snprintf(out, cap, "%s%s%s: %s", m, ms, what, why);
    else if (field)
        snprintf(out, cap, "%s%sfield '%s': %s", m, ms, field, why);
    else
        snprintf(out, cap, "%s%s%s", m, ms, why);
}
