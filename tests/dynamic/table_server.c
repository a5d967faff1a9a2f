/* SPDX-License-Identifier: MIT */
/* A server of any method table, as a hostile or a broken peer would send it: for what
 * shmrpcctl list and describe print of a table that no .svc makes (describe_test.sh).
 *     table-server ADDRESS SERVICE TABLE
 * SERVICE is the service's name; TABLE a file of lines "M NAME SIGNATURE" (methods, in
 * strcmp order of NAME) and "T DESCRIPTION" (structs and enums), fields separated by one
 * tab, where \n, \e and \xNN in a name stand for those bytes. Every call fails. Serves until
 * SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmrpc/server.h>
#include <shmrpc/service.h>
#include <shmrpc/status.h>

#define MAX 64

static shmrpc_server *server;

static void on_term(int sig)
{
    (void)sig;
    shmrpc_server_stop(server);
}

/* s with its escapes replaced, in memory that lives as long as the process. */
static char *unescape(const char *s)
{
    char *out = malloc(strlen(s) + 1), *p = out;
    if (!out) exit(1);
    while (*s) {
        if (*s != '\\' || !s[1]) {
            *p++ = *s++;
            continue;
        }
        unsigned v = 0;
        switch (*++s) {
        case 'n': *p++ = '\n'; break;
        case 'e': *p++ = 27; break;
        case 'x':
            if (sscanf(s + 1, "%2x", &v) == 1) s += 2;
            *p++ = (char)v;
            break;
        default: *p++ = *s; break;
        }
        s++;
    }
    *p = '\0';
    return out;
}

static int refuse(shmrpc_ctx *ctx, const void *handler, shmrpc_bytes req, shmrpc_buf *resp)
{
    (void)handler, (void)req, (void)resp;
    return shmrpc_ctx_error(ctx, SHMRPC_EHANDLER, "table-server answers no call");
}

static void no_handler(void) {}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: table-server ADDRESS SERVICE TABLE\n");
        return 2;
    }
    static shmrpc_method_info methods[MAX];
    static const char *types[MAX];
    static shmrpc_invoke_fn invokes[MAX];
    static size_t offsets[MAX];
    static void (*handlers[MAX])(void);
    uint32_t n = 0, n_types = 0;
    FILE *f = fopen(argv[3], "r");
    char line[4096];
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *name = strchr(line, '\t'), *sig = name ? strchr(name + 1, '\t') : NULL;
        if (line[0] == 'T' && name && n_types < MAX) {
            types[n_types++] = unescape(name + 1);
        } else if (line[0] == 'M' && sig && n < MAX) {
            *sig++ = '\0';
            methods[n] = (shmrpc_method_info){.name = unescape(name + 1), .id = n,
                                              .fingerprint = n + 1, .signature = unescape(sig)};
            invokes[n] = refuse;
            offsets[n] = n * sizeof *handlers;
            handlers[n] = no_handler;
            n++;
        }
    }
    if (!f) {
        perror(argv[3]);
        return 1;
    }
    fclose(f);
    static shmrpc_service_info info;
    info = (shmrpc_service_info){.magic = SHMRPC_SERVICE_MAGIC,
                                 .version = SHMRPC_DESCRIPTOR_VERSION,
                                 .name = unescape(argv[2]),
                                 .svc_name = "table",
                                 .port = 1,
                                 .fingerprint = 1,
                                 .n_methods = n,
                                 .methods = methods,
                                 .n_types = n_types,
                                 .types = n_types ? types : NULL};
    static shmrpc_service svc;
    svc = (shmrpc_service){.magic = SHMRPC_SERVICE_MAGIC,
                           .version = SHMRPC_DESCRIPTOR_VERSION,
                           .info = &info,
                           .invoke = invokes,
                           .handler_offset = offsets,
                           .handlers_size = (n ? n : 1) * sizeof *handlers};
    int rc = shmrpc_server_new(&server, NULL);
    if (rc == 0) rc = shmrpc_server_register(server, &svc, handlers, NULL);
    if (rc == 0) rc = shmrpc_server_listen(server, argv[1]);
    if (rc != 0) {
        fprintf(stderr, "table-server: %s: %s: %s\n", argv[1], shmrpc_strerror(rc),
                shmrpc_errmsg());
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    rc = shmrpc_server_serve(server, 1);
    shmrpc_server_free(server);
    return rc ? 1 : 0;
}
