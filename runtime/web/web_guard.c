/* SPDX-License-Identifier: MIT */
/* Deadlines on a request's body and answer (web_guard.h). civetweb gives a handler no
 * socket, so a deadline names its connection by the peer's address and port and the
 * port it came in on; when one passes, the guard finds that socket among the process's
 * descriptors and shuts it down. The handler still holds the connection then (it
 * disarms before it returns, under the same lock), so the descriptor cannot have been
 * closed and reused in between. */
#include "web_guard.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* An address as IPv6 (IPv4 mapped), so that both sides compare alike. */
typedef struct peer {
    unsigned char addr[16];
    uint16_t port; /* host order */
} peer;

typedef struct slot {
    bool armed, fired;
    int how;             /* shutdown's: SHUT_RD for a body, SHUT_RDWR for an answer */
    int64_t deadline_ms; /* CLOCK_MONOTONIC */
    peer who;
} slot;

struct web_guard {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* on CLOCK_MONOTONIC: a new deadline, or stop */
    pthread_t thread;
    bool stop;
    uint16_t port;
    slot slots[WEB_GUARD_SLOTS];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool peer_of(const struct sockaddr_storage *sa, peer *p)
{
    memset(p, 0, sizeof *p);
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        p->addr[10] = p->addr[11] = 0xff;
        memcpy(p->addr + 12, &a->sin_addr, 4);
        p->port = ntohs(a->sin_port);
        return true;
    }
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        memcpy(p->addr, &a->sin6_addr, 16);
        p->port = ntohs(a->sin6_port);
        return true;
    }
    return false;
}

/* Shuts down the socket that came in on g->port from who, if there is one. Under mu. */
static void shut(const web_guard *g, const peer *who, int how)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return;
    int self = dirfd(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (*end || end == e->d_name || fd == self) continue;
        struct sockaddr_storage sa;
        socklen_t len = sizeof sa;
        peer p;
        if (getsockname((int)fd, (struct sockaddr *)&sa, &len) != 0 || !peer_of(&sa, &p) ||
            p.port != g->port)
            continue;
        len = sizeof sa;
        if (getpeername((int)fd, (struct sockaddr *)&sa, &len) != 0 || !peer_of(&sa, &p) ||
            p.port != who->port || memcmp(p.addr, who->addr, 16) != 0)
            continue;
        if (how != SHUT_RD) {
            /* An answer's bytes already queued would still go out at the peer's pace
             * after a shutdown: civetweb's close resets the connection instead. */
            struct linger now = {.l_onoff = 1, .l_linger = 0};
            setsockopt((int)fd, SOL_SOCKET, SO_LINGER, &now, sizeof now);
        }
        shutdown((int)fd, how);
        break;
    }
    closedir(d);
}

static void *run(void *arg)
{
    web_guard *g = arg;
    pthread_mutex_lock(&g->mu);
    while (!g->stop) {
        int64_t now = now_ms(), next = INT64_MAX;
        for (size_t i = 0; i < WEB_GUARD_SLOTS; i++) {
            slot *s = &g->slots[i];
            if (!s->armed || s->fired) continue;
            if (s->deadline_ms <= now) {
                shut(g, &s->who, s->how);
                s->fired = true;
            } else if (s->deadline_ms < next) {
                next = s->deadline_ms;
            }
        }
        if (next == INT64_MAX) {
            pthread_cond_wait(&g->cv, &g->mu);
        } else {
            struct timespec ts = {(time_t)(next / 1000), (long)(next % 1000) * 1000000};
            pthread_cond_timedwait(&g->cv, &g->mu, &ts);
        }
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

web_guard *web_guard_start(int port)
{
    web_guard *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->port = (uint16_t)port;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&g->mu, NULL);
    if (pthread_create(&g->thread, NULL, run, g) != 0) {
        pthread_cond_destroy(&g->cv);
        pthread_mutex_destroy(&g->mu);
        free(g);
        return NULL;
    }
    return g;
}

void web_guard_stop(web_guard *g)
{
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    g->stop = true;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->thread, NULL);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

int web_guard_arm(web_guard *g, const struct mg_connection *conn, int64_t ms, int how)
{
    if (!g) return -1;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    struct sockaddr_storage sa;
    memset(&sa, 0, sizeof sa);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&sa;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&sa;
    if (inet_pton(AF_INET, ri->remote_addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)ri->remote_port);
    } else if (inet_pton(AF_INET6, ri->remote_addr, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)ri->remote_port);
    }
    peer who;
    if (!peer_of(&sa, &who)) return -1;
    int found = -1;
    pthread_mutex_lock(&g->mu);
    for (int i = 0; i < WEB_GUARD_SLOTS && found < 0; i++) {
        slot *s = &g->slots[i];
        if (s->armed) continue;
        *s = (slot){.armed = true, .how = how, .deadline_ms = now_ms() + ms, .who = who};
        found = i;
    }
    if (found >= 0) pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
    return found;
}

bool web_guard_disarm(web_guard *g, int i)
{
    if (!g || i < 0 || i >= WEB_GUARD_SLOTS) return false;
    pthread_mutex_lock(&g->mu);
    bool fired = g->slots[i].fired;
    g->slots[i] = (slot){0};
    pthread_mutex_unlock(&g->mu);
    return fired;
}
