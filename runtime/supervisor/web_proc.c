/* The management page in a process of its own (web_proc.h). Three processes:
 * - the supervisor holds the write end of the keeper's command pipe (the keeper's stdin:
 *   'g' to serve, 'q' to stop; end of file, the supervisor died: stop at once) and the
 *   read end of the log pipe (the keeper's and the page's stdout and stderr);
 * - the keeper (shmrpc-pagekeep), forked while the supervisor is one thread, so that it
 *   may fork again safely, runs no page code: it starts the page, waits for it, and starts
 *   it again after a backoff when it dies;
 * - the page (shmrpc-page) runs civetweb (web.c) until a SIGTERM from the keeper.
 * Both die with their parent (PR_SET_PDEATHSIG), so none outlives a SIGKILLed supervisor. */
#include "web_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "logfile.h"
#include "web.h"

/* The page's first restart comes after RESTART_MIN_MS, each quick death doubles it up to
 * RESTART_MAX_MS; a page that served for STABLE_MS starts again from the minimum. */
#define RESTART_MIN_MS 100
#define RESTART_MAX_MS 10000
#define STABLE_MS 60000
/* How long the keeper lets a stopping page finish its requests (each bounded by its
 * body's deadline, its call's timeout and its answer's deadline: 10 + 5 + 10 s, web.c),
 * and the supervisor the keeper, before SIGKILL. */
#define PAGE_STOP_MS 30000
#define KEEPER_STOP_MS (PAGE_STOP_MS + 5000)
/* The page's exit status when it could not start (a port it cannot bind, a secret it
 * cannot read): said in the log already, and not retried. */
#define PAGE_CANNOT_START 3

struct sup_web_proc {
    const sup_ctx *ctx;
    pid_t keeper; /* 0: reaped */
    int cmd_w;    /* the keeper's stdin */
    int log_r;    /* the keeper's and the page's stdout and stderr, non-blocking */
    size_t n;     /* bytes of a line not yet ended, in line */
    char line[1024];
};

/* --- the page's process ---------------------------------------------------------------- */

static void page_main(shmrpc__config *c, const char *control_addr, pid_t supervisor, pid_t keeper)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != keeper) _exit(0); /* the keeper died before the line above */
    prctl(PR_SET_NAME, "shmrpc-page");
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        close(null);
    }
    /* SIGTERM stays blocked (civetweb's threads inherit the mask): it is waited for. */
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    const sup_ctx ctx = {.pid = supervisor}; /* its lines to stderr: the log pipe */
    sup_web *web = sup_web_start(c, control_addr, &ctx);
    if (!web) {
        shmrpc__config_free(c);
        exit(PAGE_CANNOT_START);
    }
    while (sigwaitinfo(&term, NULL) < 0 && errno == EINTR)
        ;
    sup_web_stop(web);
    shmrpc__config_free(c);
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

/* Waits up to ms for the page, then SIGKILLs it; reaps it either way. */
static void page_reap(pid_t page, int64_t ms)
{
    int64_t end = sup_mono_ms() + ms;
    while (waitpid(page, NULL, WNOHANG) == 0) {
        if (sup_mono_ms() >= end) {
            kill(page, SIGKILL);
            while (waitpid(page, NULL, 0) < 0 && errno == EINTR)
                ;
            return;
        }
        poll(NULL, 0, 10);
    }
}

static void keeper_main(shmrpc__config *c, const char *control_addr, pid_t supervisor)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != supervisor) _exit(0); /* the supervisor died before the line above */
    prctl(PR_SET_NAME, "shmrpc-pagekeep");
    /* ^C at a terminal reaches the supervisor, which stops the page in its turn. */
    signal(SIGINT, SIG_IGN);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGCHLD);
    sigaddset(&sigs, SIGTERM);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    const sup_ctx ctx = {0};
    if (sfd < 0) {
        sup_logf(&ctx, "web monitor: no signalfd: %s; running without the page", strerror(errno));
        exit(1);
    }
    pid_t keeper = getpid(), page = 0;
    bool serve = false, quit = false;
    int64_t started = 0, restart_at = 0, backoff = RESTART_MIN_MS;
    while (!quit) {
        int64_t now = sup_mono_ms();
        if (serve && !page && restart_at && now >= restart_at) {
            restart_at = 0;
            started = now;
            page = fork();
            if (page == 0) {
                close(sfd);
                page_main(c, control_addr, supervisor, keeper);
            }
            if (page < 0) {
                sup_logf(&ctx, "web monitor: cannot fork the page: %s; again in %lld ms",
                         strerror(errno), (long long)backoff);
                page = 0;
                restart_at = now + backoff;
                backoff = backoff * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : backoff * 2;
            }
        }
        int timeout = !restart_at ? -1 : restart_at <= now ? 0 : (int)(restart_at - now);
        struct pollfd pfd[2] = {{.fd = 0, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        if (poll(pfd, 2, timeout) < 0 && errno != EINTR) break;
        if (pfd[0].revents) {
            char cmd;
            ssize_t got = read(0, &cmd, 1);
            if (got == 1 && cmd == 'g' && !serve) {
                serve = true;
                restart_at = sup_mono_ms();
            } else if (got == 1 && cmd == 'q') {
                quit = true;
            } else if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) {
                /* The supervisor is gone: nothing is left to finish requests for. */
                if (page) kill(page, SIGKILL);
                quit = true;
            }
        }
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
            if (si.ssi_signo == SIGTERM) quit = true;
        int status;
        pid_t got;
        while (page && (got = waitpid(page, &status, WNOHANG)) == page) {
            page = 0;
            now = sup_mono_ms();
            if (WIFEXITED(status) && WEXITSTATUS(status) == PAGE_CANNOT_START) break;
            if (now - started >= STABLE_MS) backoff = RESTART_MIN_MS;
            char why[96];
            sup_logf(&ctx, "web monitor: the page's process %s; starting it again in %lld ms",
                     death(status, why, sizeof why), (long long)backoff);
            restart_at = now + backoff;
            backoff = backoff * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : backoff * 2;
        }
    }
    if (page) {
        kill(page, SIGTERM);
        page_reap(page, PAGE_STOP_MS);
    }
    close(sfd);
    shmrpc__config_free(c);
    exit(0);
}

/* --- the supervisor's side ------------------------------------------------------------- */

sup_web_proc *sup_web_proc_fork(shmrpc__config *c, const char *control_addr, const sup_ctx *ctx)
{
    sup_web_proc *p = calloc(1, sizeof *p);
    int cmd[2] = {-1, -1}, out[2] = {-1, -1};
    if (!p || pipe2(cmd, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC | O_NONBLOCK) != 0) {
        sup_logf(ctx, "web monitor: cannot make its pipes: %s; running without the page",
                 strerror(p ? errno : ENOMEM));
        goto fail;
    }
    char addr[256];
    snprintf(addr, sizeof addr, "%s", control_addr);
    pid_t supervisor = getpid(), pid = fork();
    if (pid < 0) {
        sup_logf(ctx, "web monitor: cannot fork: %s; running without the page", strerror(errno));
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
    close(cmd[0]);
    close(out[1]);
    p->ctx = ctx;
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

static void command(sup_web_proc *p, char cmd)
{
    if (p->cmd_w >= 0 && write(p->cmd_w, &cmd, 1) != 1)
        sup_logf(p->ctx, "web monitor: cannot tell its keeper '%c': %s", cmd, strerror(errno));
}

void sup_web_proc_serve(sup_web_proc *p)
{
    if (p) command(p, 'g');
}

int sup_web_proc_fd(const sup_web_proc *p)
{
    return p ? p->log_r : -1;
}

/* One line of the keeper's or the page's: sup_logf's own "shmrpc-service: " comes off. */
static void relay(sup_web_proc *p, const char *s, size_t n)
{
    static const char own[] = "shmrpc-service: ";
    if (n >= sizeof own - 1 && memcmp(s, own, sizeof own - 1) == 0) {
        s += sizeof own - 1;
        n -= sizeof own - 1;
    }
    sup_logf(p->ctx, "%.*s", (int)n, s);
}

void sup_web_proc_drain(sup_web_proc *p)
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

bool sup_web_proc_reaped(sup_web_proc *p, pid_t pid, int status)
{
    if (!p || !p->keeper || pid != p->keeper) return false;
    p->keeper = 0;
    char why[96];
    sup_logf(p->ctx, "web monitor: its keeper (pid %d) %s; the page is gone until a restart",
             (int)pid, death(status, why, sizeof why));
    return true;
}

void sup_web_proc_stop(sup_web_proc *p)
{
    if (!p) return;
    command(p, 'q');
    close(p->cmd_w);
    p->cmd_w = -1;
    int64_t end = sup_mono_ms() + KEEPER_STOP_MS;
    while (p->keeper && waitpid(p->keeper, NULL, WNOHANG) == 0) {
        if (sup_mono_ms() >= end) {
            sup_logf(p->ctx, "web monitor: its keeper did not stop in %d ms: SIGKILL",
                     KEEPER_STOP_MS);
            kill(p->keeper, SIGKILL);
            while (waitpid(p->keeper, NULL, 0) < 0 && errno == EINTR)
                ;
            break;
        }
        struct pollfd pfd = {.fd = p->log_r, .events = POLLIN};
        poll(&pfd, 1, 20); /* a negative fd is skipped: a 20 ms nap */
        sup_web_proc_drain(p);
    }
    sup_web_proc_drain(p);
    if (p->n) relay(p, p->line, p->n);
    if (p->log_r >= 0) close(p->log_r);
    free(p);
}
