/* SPDX-License-Identifier: MIT */
/* The management page in a process of its own (web_proc.h). Three processes:
 * - the supervisor holds the write end of the keeper's command pipe (the keeper's stdin)
 *   and the read end of the log pipe (the keeper's and the page's stdout and stderr);
 * - the keeper (shmrpc-pagekeep), forked while the supervisor is one thread, so that it
 *   may fork again safely, runs no page code: it starts the page, asks it every few
 *   seconds whether it answers, and starts it again after a backoff when it died or hung;
 *   it tells the supervisor, on the log pipe, when the first page answers (SAY_*);
 * - the page (shmrpc-page) runs civetweb (web.c) until the keeper's SIGTERM.
 * The keeper leads a process group of its own, so that a signal to the supervisor's group
 * (^C, kill -- -PGID, timeout(1)) reaches the supervisor only, which stops the page in its
 * turn; both die with their parent (PR_SET_PDEATHSIG), so none outlives a SIGKILLed
 * supervisor. */
#include "web_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "web.h"
#include "web_auth.h"

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The page's first restart comes after RESTART_MIN_MS, each quick death doubles it up to
 * RESTART_MAX_MS; a page that served for STABLE_MS starts again from the minimum. */
#define RESTART_MIN_MS 100
#define RESTART_MAX_MS 10000
#define STABLE_MS 60000
/* Every PROBE_EVERY_MS the keeper sends the page HEAD /favicon.svg and gives it
 * PROBE_TIMEOUT_MS to begin an answer (web_route.c answers at once; 200 idle connections, more
 * than its threads, delay it up to its 5 s header timeout); PROBE_MISSES misses in a row
 * and the page is taken for hung: SIGKILL, and a new one. */
#define PROBE_EVERY_MS 2000
/* Until the page first answers (the supervisor's READY=1 waits for it), the keeper probes
 * every PROBE_FIRST_MS, and a probe that fails within PROBE_TIMEOUT_MS of the page's start
 * (refused: it has not bound its port yet) is no miss. */
#define PROBE_FIRST_MS 20
#define PROBE_TIMEOUT_MS 6000
#define PROBE_MISSES 2
/* How long the keeper lets a stopping page finish, and the supervisor the keeper, before
 * SIGKILL. Each is sent SIGCONT with its stop, so that one SIGSTOPped stops as any other,
 * in milliseconds (web_stop). One that has not in 2 s is hung, or traced, or has a request
 * that waits: on the control service, which the stopping supervisor no longer serves (up
 * to its 3 s timeout), or on a peer that is slow on purpose (whose body and answer may
 * take 10 s each, web_request.c and web_reply.c). None is worth holding the supervisor's
 * stop for: the services are stopped by then, and the page keeps nothing that a SIGKILL
 * loses (its sessions end with it either way). */
#define PAGE_STOP_MS 2000
#define KEEPER_STOP_MS (PAGE_STOP_MS + 2000)
/* The page's exit status when it could not start (a port it cannot bind, a secret it
 * cannot read): said in the log already. Not retried when the first page says it (the
 * file asks for what cannot be); retried with backoff later (another process may hold
 * the port a moment). */
#define PAGE_CANNOT_START 3
/* What the keeper tells the supervisor on the log pipe, as a line of its own that
 * web_proc_drain takes out: the page answered for the first time, or will not come (its
 * first process could not start, or the keeper cannot probe its address). */
#define SAY_ANSWERS "\001page answers"
#define SAY_NO_PAGE "\001no page"

/* The commands on the keeper's stdin. A message is written whole in one write of less
 * than PIPE_BUF bytes, so the keeper never reads half of one. */
enum {
    CMD_RESOLVED = 'r', /* a module= service's shm name and port: struct resolved, the name */
    CMD_SERVE = 'g',    /* every service has started: start the page */
    CMD_QUIT = 'q',     /* stop the page, letting it finish its requests, and exit */
    /* End of file: the supervisor is gone; SIGKILL the page and exit. */
};

struct resolved {
    uint32_t index; /* in the configuration's services */
    int32_t tcp_port;
    uint32_t name_len; /* the shm name's bytes that follow, at most SHM_NAME_MAX */
};
#define SHM_NAME_MAX 64

struct web_proc {
    const web_logger *log;
    pid_t keeper;    /* 0: reaped */
    bool answered;   /* the keeper said SAY_ANSWERS */
    bool settled;    /* ... or SAY_NO_PAGE, or is gone */
    int cmd_w;       /* the keeper's stdin; -1 once closed */
    int log_r;       /* the keeper's and the page's stdout and stderr, non-blocking */
    size_t n;        /* bytes of a line not yet ended, in line */
    char line[1100]; /* a line (1024 bytes) and its "shmrpc-service: " */
};

/* --- the page's process ---------------------------------------------------------------- */

static void page_main(cfg_file *c, const char *control_addr, pid_t supervisor, pid_t keeper)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != keeper) _exit(0); /* the keeper died before the line above */
    prctl(PR_SET_NAME, "shmrpc-page");
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        close(null);
    }
    /* SIGTERM stays blocked (civetweb's threads inherit the mask): it is waited for, and
     * only the keeper's counts. */
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    /* Before any thread and any of jansson's blocks that could hold a secret: what jansson
     * frees in this process is wiped, the copies of a JSON login's secret among it. */
    web_auth_json_wipe(NULL);
    char err[768]; /* a secret's path, as long as the file system lets it be, fits */
    web_server *web = web_start(c, control_addr, supervisor, NULL, err, sizeof err);
    if (!web) { /* its lines to stderr: the log pipe */
        web_logf(NULL, "web monitor: %s; running without the page", err);
        cfg_free(c);
        exit(PAGE_CANNOT_START);
    }
    for (;;) {
        siginfo_t si;
        if (sigwaitinfo(&term, &si) == SIGTERM && si.si_pid == keeper) break;
    }
    web_stop(web);
    cfg_free(c);
    exit(0);
}

/* --- the keeper ----------------------------------------------------------------------- */

static const char *death(int status, char *buf, size_t cap)
{
    if (WIFSIGNALED(status))
        snprintf(buf, cap, "was killed by %s", strsignal(WTERMSIG(status)));
    else
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(status));
    return buf;
}

typedef struct keeper {
    cfg_file *c;
    const char *control_addr;
    pid_t supervisor, self, page; /* page: 0 when none runs */
    bool serve, quit, started_once;
    bool told;                            /* the supervisor was told SAY_ANSWERS or SAY_NO_PAGE */
    int64_t started, restart_at, backoff; /* restart_at: 0, none due */
    /* The probe: a connection to the page, the next one's time, the current one's end. */
    struct sockaddr_storage addr;
    socklen_t addr_len; /* 0: no address to probe */
    int probe;          /* -1: none open */
    bool probe_sent;
    char head[7]; /* the answer's first bytes: "HTTP/1." */
    size_t head_n;
    int64_t probe_at, probe_end;
    int misses;
} keeper;

/* Tells the supervisor, once, whether it may take the page as up (SAY_*). */
static void tell(keeper *k, const char *what)
{
    k->told = true;
    printf("%s\n", what);
    fflush(stdout);
}

static void schedule_restart(keeper *k, int64_t now)
{
    k->restart_at = now + k->backoff;
    k->backoff = k->backoff * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : k->backoff * 2;
}

/* Where the probe connects: the page's host, or loopback for a wildcard one. */
static void probe_address(keeper *k)
{
    const char *host = k->c->web_host ? k->c->web_host : "127.0.0.1";
    char bare[64];
    snprintf(bare, sizeof bare, "%.*s", (int)strcspn(host + (host[0] == '['), "]"),
             host + (host[0] == '['));
    if (strcasecmp(bare, "localhost") == 0 || strcmp(bare, "0.0.0.0") == 0)
        strcpy(bare, "127.0.0.1");
    else if (strcmp(bare, "::") == 0)
        strcpy(bare, "::1");
    char port[16];
    snprintf(port, sizeof port, "%d", k->c->web_port ? k->c->web_port : 5155);
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
                             .ai_socktype = SOCK_STREAM},
                    *ai = NULL;
    if (getaddrinfo(bare, port, &hints, &ai) == 0 && ai->ai_addrlen <= sizeof k->addr) {
        memcpy(&k->addr, ai->ai_addr, ai->ai_addrlen);
        k->addr_len = ai->ai_addrlen;
    }
    if (ai) freeaddrinfo(ai);
}

static void probe_close(keeper *k, int64_t now, bool answered)
{
    if (k->probe >= 0) close(k->probe);
    k->probe = -1;
    k->probe_at = now + (k->told ? PROBE_EVERY_MS : PROBE_FIRST_MS);
    if (answered) {
        k->misses = 0;
        if (!k->told) tell(k, SAY_ANSWERS);
    } else if (!k->told && now - k->started < PROBE_TIMEOUT_MS) {
        /* not bound yet: no miss */
    } else if (++k->misses >= PROBE_MISSES && k->page) {
        web_logf(NULL,
                 "web monitor: the page's process (pid %d) did not answer %d probes of %d s: "
                 "SIGKILL",
                 (int)k->page, k->misses, PROBE_TIMEOUT_MS / 1000);
        kill(k->page, SIGKILL); /* reaped, and started again, as any death */
        k->misses = 0;
    }
}

/* Moves the probe on after poll: connected, request sent, the answer's first bytes read. */
static void probe_step(keeper *k, short revents, int64_t now)
{
    if (k->probe < 0) return;
    if (!k->probe_sent && (revents & (POLLOUT | POLLERR | POLLHUP))) {
        static const char req[] = "HEAD /favicon.svg HTTP/1.0\r\n\r\n";
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(k->probe, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || send(k->probe, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)sizeof req - 1) {
            probe_close(k, now, false);
            return;
        }
        k->probe_sent = true;
    } else if (k->probe_sent && (revents & (POLLIN | POLLERR | POLLHUP))) {
        ssize_t got = recv(k->probe, k->head + k->head_n, sizeof k->head - k->head_n, 0);
        if (got <= 0) {
            probe_close(k, now, false);
            return;
        }
        k->head_n += (size_t)got;
        if (k->head_n == sizeof k->head) {
            probe_close(k, now, memcmp(k->head, "HTTP/1.", sizeof k->head) == 0);
            return;
        }
    }
    if (now >= k->probe_end) probe_close(k, now, false);
}

static void probe_start(keeper *k, int64_t now)
{
    k->probe = socket(k->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    k->probe_sent = false;
    k->head_n = 0;
    k->probe_end = now + PROBE_TIMEOUT_MS;
    if (k->probe < 0 ||
        (connect(k->probe, (struct sockaddr *)&k->addr, k->addr_len) != 0 && errno != EINPROGRESS))
        probe_close(k, now, false);
}

static void page_start(keeper *k, int64_t now)
{
    k->restart_at = 0;
    k->started = now;
    k->page = fork();
    if (k->page == 0) page_main(k->c, k->control_addr, k->supervisor, k->self);
    if (k->page < 0) {
        k->page = 0;
        web_logf(NULL, "web monitor: cannot fork the page: %s; again in %lld ms", strerror(errno),
                 (long long)k->backoff);
        schedule_restart(k, now);
        return;
    }
    k->misses = 0;
    k->probe_at = now + (k->told ? PROBE_EVERY_MS : PROBE_FIRST_MS);
}

static void page_reaped(keeper *k, int status, int64_t now)
{
    bool first = !k->started_once;
    k->page = 0;
    k->started_once = true;
    if (k->probe >= 0) close(k->probe);
    k->probe = -1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == PAGE_CANNOT_START && first) {
        /* Even when told it answers: what answered at its port was another program's. */
        tell(k, SAY_NO_PAGE);
        return;
    }
    if (now - k->started >= STABLE_MS) k->backoff = RESTART_MIN_MS;
    char why[96];
    web_logf(NULL, "web monitor: the page's process %s; starting it again in %lld ms",
             death(status, why, sizeof why), (long long)k->backoff);
    schedule_restart(k, now);
}

/* Reads exactly n bytes from stdin (a whole message was written at once). */
static bool read_all(void *p, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = read(0, (char *)p + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        got += (size_t)r;
    }
    return true;
}

/* One command from the supervisor; false at end of file or on a broken message. */
static bool command_read(keeper *k)
{
    char cmd;
    if (!read_all(&cmd, 1)) return false;
    if (cmd == CMD_SERVE && !k->serve) {
        k->serve = true;
        k->restart_at = mono_ms();
        if (!k->addr_len) tell(k, SAY_NO_PAGE); /* nothing to probe: do not wait for it */
    } else if (cmd == CMD_QUIT) {
        k->quit = true;
    } else if (cmd == CMD_RESOLVED) {
        struct resolved r;
        char name[SHM_NAME_MAX + 1];
        if (!read_all(&r, sizeof r) || r.name_len > SHM_NAME_MAX || !read_all(name, r.name_len))
            return false;
        name[r.name_len] = '\0';
        if (r.index < k->c->n_services) {
            cfg_service *s = &k->c->services[r.index];
            s->tcp_port = r.tcp_port;
            if (r.name_len) s->shm_name = cfg_strdup(k->c, name);
        }
    }
    return true;
}

static void keeper_main(cfg_file *c, const char *control_addr, pid_t supervisor)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != supervisor) _exit(0); /* the supervisor died before the line above */
    prctl(PR_SET_NAME, "shmrpc-pagekeep");
    setpgid(0, 0);
    keeper k = {.c = c,
                .control_addr = control_addr,
                .supervisor = supervisor,
                .self = getpid(),
                .backoff = RESTART_MIN_MS,
                .probe = -1};
    /* SIGTERM stays blocked, for the page to wait for; the keeper itself stops on the
     * supervisor's word only. */
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN); /* the page's too: a peer that left is an error, not a death */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGCHLD);
    sigaddset(&sigs, SIGTERM);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    sigdelset(&sigs, SIGTERM);
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        web_logf(NULL, "web monitor: no signalfd: %s; running without the page", strerror(errno));
        exit(1);
    }
    probe_address(&k);
    while (!k.quit) {
        int64_t now = mono_ms();
        if (k.serve && !k.page && k.restart_at && now >= k.restart_at) page_start(&k, now);
        if (k.page && k.probe < 0 && k.addr_len && now >= k.probe_at) probe_start(&k, now);
        int64_t next = k.restart_at               ? k.restart_at
                       : k.probe >= 0             ? k.probe_end
                       : k.page && k.addr_len > 0 ? k.probe_at
                                                  : INT64_MAX;
        int timeout = next == INT64_MAX ? -1 : next <= now ? 0 : (int)(next - now);
        struct pollfd pfd[3] = {{.fd = 0, .events = POLLIN},
                                {.fd = sfd, .events = POLLIN},
                                {.fd = k.probe, .events = k.probe_sent ? POLLIN : POLLOUT}};
        if (poll(pfd, 3, timeout) < 0 && errno != EINTR) break;
        now = mono_ms();
        if (pfd[0].revents && !command_read(&k)) {
            /* The supervisor is gone: nothing is left to finish requests for. */
            if (k.page) kill(k.page, SIGKILL);
            k.quit = true;
        }
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
            ; /* SIGCHLD: reaped below */
        int status;
        if (k.page && waitpid(k.page, &status, WNOHANG) == k.page) page_reaped(&k, status, now);
        probe_step(&k, pfd[2].revents, now);
    }
    if (k.probe >= 0) close(k.probe);
    if (k.page) {
        /* SIGCONT after SIGTERM, as systemd stops a unit: a SIGSTOPped page wakes to find
         * the SIGTERM waiting, and stops as it would have. */
        kill(k.page, SIGTERM);
        kill(k.page, SIGCONT);
        int64_t end = mono_ms() + PAGE_STOP_MS;
        while (waitpid(k.page, NULL, WNOHANG) == 0) {
            if (mono_ms() >= end) {
                web_logf(NULL, "web monitor: the page did not stop in %d ms: SIGKILL",
                         PAGE_STOP_MS);
                kill(k.page, SIGKILL);
                while (waitpid(k.page, NULL, 0) < 0 && errno == EINTR)
                    ;
                break;
            }
            poll(NULL, 0, 10);
        }
    }
    close(sfd);
    cfg_free(c);
    exit(0);
}

/* --- the supervisor's side ------------------------------------------------------------- */

web_proc *web_proc_fork(cfg_file *c, const char *control_addr, const web_logger *log, char *err,
                        size_t cap)
{
    web_proc *p = calloc(1, sizeof *p);
    int cmd[2] = {-1, -1}, out[2] = {-1, -1};
    if (!p || pipe2(cmd, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(err, cap, "cannot make its pipes: %s", strerror(p ? errno : ENOMEM));
        goto fail;
    }
    char addr[256];
    snprintf(addr, sizeof addr, "%s", control_addr);
    pid_t supervisor = getpid(), pid = fork();
    if (pid < 0) {
        snprintf(err, cap, "cannot fork: %s", strerror(errno));
        goto fail;
    }
    if (pid == 0) {
        /* Its stdin is the command pipe, stdout and stderr the log pipe (blocking here: a
         * line waits for the supervisor rather than being lost), and nothing else of the
         * supervisor's stays open. */
        int fl = fcntl(out[1], F_GETFL);
        if (fl >= 0) fcntl(out[1], F_SETFL, fl & ~O_NONBLOCK);
        if (dup2(cmd[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(out[1], 2) < 0) _exit(1);
        close_range(3, UINT_MAX, 0);
        keeper_main(c, addr, supervisor);
    }
    setpgid(pid, pid); /* as the keeper does itself: whichever runs first */
    close(cmd[0]);
    close(out[1]);
    p->log = log;
    p->keeper = pid;
    p->cmd_w = cmd[1];
    p->log_r = out[0];
    return p;
fail:
    for (int i = 0; i < 2; i++) {
        if (cmd[i] >= 0) close(cmd[i]);
        if (out[i] >= 0) close(out[i]);
    }
    free(p);
    return NULL;
}

/* Writes one whole message to the keeper, unless it is gone. */
static void command(web_proc *p, const void *msg, size_t n)
{
    if (p->cmd_w >= 0 && write(p->cmd_w, msg, n) != (ssize_t)n)
        web_logf(p->log, "web monitor: cannot tell its keeper '%c': %s", *(const char *)msg,
                 strerror(errno));
}

void web_proc_resolved(web_proc *p, const cfg_file *c)
{
    for (size_t i = 0; p && i < c->n_services; i++) {
        const cfg_service *s = &c->services[i];
        if (s->kind != CFG_MODULE) continue;
        char msg[1 + sizeof(struct resolved) + SHM_NAME_MAX];
        struct resolved r = {.index = (uint32_t)i, .tcp_port = s->tcp_port};
        size_t len = s->shm_name ? strlen(s->shm_name) : 0;
        r.name_len = (uint32_t)(len > SHM_NAME_MAX ? 0 : len); /* longer: refused at resolve */
        msg[0] = CMD_RESOLVED;
        memcpy(msg + 1, &r, sizeof r);
        memcpy(msg + 1 + sizeof r, s->shm_name ? s->shm_name : "", r.name_len);
        command(p, msg, 1 + sizeof r + r.name_len);
    }
}

void web_proc_serve(web_proc *p)
{
    if (p) command(p, &(char){CMD_SERVE}, 1);
}

bool web_proc_settled(const web_proc *p)
{
    return !p || p->settled;
}

bool web_proc_answered(const web_proc *p)
{
    return p && p->answered;
}

int web_proc_fd(const web_proc *p)
{
    return p ? p->log_r : -1;
}

/* One line of the keeper's or the page's: web_logf's own "shmrpc-service: " comes off. */
static void relay(web_proc *p, const char *s, size_t n)
{
    static const char own[] = "shmrpc-service: ";
    if (n == sizeof SAY_ANSWERS - 1 && memcmp(s, SAY_ANSWERS, n) == 0) {
        p->answered = p->settled = true;
        return;
    }
    if (n == sizeof SAY_NO_PAGE - 1 && memcmp(s, SAY_NO_PAGE, n) == 0) {
        p->answered = false;
        p->settled = true;
        return;
    }
    if (n >= sizeof own - 1 && memcmp(s, own, sizeof own - 1) == 0) {
        s += sizeof own - 1;
        n -= sizeof own - 1;
    }
    web_logf(p->log, "%.*s", (int)n, s);
}

void web_proc_drain(web_proc *p)
{
    if (!p || p->log_r < 0) return;
    for (;;) {
        ssize_t got = read(p->log_r, p->line + p->n, sizeof p->line - p->n);
        if (got < 0 && errno == EINTR) continue;
        if (got == 0) { /* the keeper and the page are gone: no more POLLHUP to poll */
            if (p->n) relay(p, p->line, p->n);
            p->n = 0;
            close(p->log_r);
            p->log_r = -1;
        }
        if (got <= 0) break;
        p->n += (size_t)got;
        char *start = p->line, *nl;
        while ((nl = memchr(start, '\n', p->n - (size_t)(start - p->line)))) {
            relay(p, start, (size_t)(nl - start));
            start = nl + 1;
        }
        p->n -= (size_t)(start - p->line);
        memmove(p->line, start, p->n);
        if (p->n == sizeof p->line) { /* a line longer than the buffer, in pieces */
            relay(p, p->line, p->n);
            p->n = 0;
        }
    }
}

bool web_proc_reaped(web_proc *p, pid_t pid, int status)
{
    if (!p || !p->keeper || pid != p->keeper) return false;
    p->keeper = 0;
    p->settled = true;
    close(p->cmd_w); /* nobody to tell anything any more */
    p->cmd_w = -1;
    char why[96];
    web_logf(p->log, "web monitor: its keeper (pid %d) %s; the page is gone until a restart",
             (int)pid, death(status, why, sizeof why));
    return true;
}

void web_proc_stop(web_proc *p, int sig_fd)
{
    if (!p) return;
    command(p, &(char){CMD_QUIT}, 1);
    if (p->cmd_w >= 0) close(p->cmd_w);
    p->cmd_w = -1;
    /* A SIGSTOPped keeper wakes to read it (not yet reaped: the pid is still its). */
    if (p->keeper) kill(p->keeper, SIGCONT);
    int64_t end = mono_ms() + KEEPER_STOP_MS;
    while (p->keeper && waitpid(p->keeper, NULL, WNOHANG) == 0) {
        struct pollfd pfd[2] = {{.fd = p->log_r, .events = POLLIN},
                                {.fd = sig_fd, .events = POLLIN}};
        struct signalfd_siginfo si;
        bool again = false; /* a SIGTERM or SIGINT while it stops: no more waiting */
        while (sig_fd >= 0 && read(sig_fd, &si, sizeof si) == (ssize_t)sizeof si)
            again |= si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT;
        if (again || mono_ms() >= end) {
            if (again)
                web_logf(p->log, "web monitor: stopping again: SIGKILL to its keeper");
            else
                web_logf(p->log, "web monitor: its keeper did not stop in %d ms: SIGKILL",
                         KEEPER_STOP_MS);
            kill(p->keeper, SIGKILL); /* and the page, by its PR_SET_PDEATHSIG */
            while (waitpid(p->keeper, NULL, 0) < 0 && errno == EINTR)
                ;
            break;
        }
        poll(pfd, 2, 20); /* negative fds are skipped */
        web_proc_drain(p);
    }
    web_proc_drain(p);
    if (p->n) relay(p, p->line, p->n);
    if (p->log_r >= 0) close(p->log_r);
    free(p);
}
