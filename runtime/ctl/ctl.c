/* shmrpcctl: the operator's tool. One table of subcommands; status, start, stop, restart,
 * logs and scale talk to the supervisor's control service (ctl_control.c). */
#include <stdio.h>
#include <string.h>

#include <shmrpc/version.h>

#include "ctl_call.h"
#include "ctl_control.h"
#include "ctl_map.h"
#include "ctl_queue.h"
#include "ctl_segments.h"

typedef struct command {
    const char *name;
    const char *args;
    const char *help;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand */
} command;

static const command commands[] = {
    {"call", "ADDRESS METHOD [ARGS-AS-JSON|-]",
     "call a method of a running service; print its result as JSON", ctl_call_main},
    {"ls", "[--json] [NAME...]", "list shmrpc segments in /dev/shm with their owners", ctl_ls_main},
    {"clean", "[--dry-run] [NAME...]", "remove segments whose owner is dead", ctl_clean_main},
    {"queue", "stat|peek|push|pop NAME [VALUE|-]",
     "a shared-memory queue: its counters, or one message (JSON when typed)", ctl_queue_main},
    {"map", "stat|get|put|del|keys NAME [KEY [VALUE|-]]",
     "a shared map: its counters, or entries (JSON when typed)", ctl_map_main},
    /* These talk to shmrpc-service's control service (ctl_control.c), found by
     * -a ADDRESS, --ini FILE, $SHMRPC_CONTROL or $SHMRPC_INI. */
    {"status", "[--json]", "the supervisor's services", ctl_status},
    {"start", "SERVICE [--no-wait]", "start a service of the supervisor", ctl_start},
    {"stop", "SERVICE [--no-wait]", "stop a service of the supervisor", ctl_stop},
    {"restart", "SERVICE [--no-wait]", "restart a service of the supervisor", ctl_restart},
    {"logs", "SERVICE [-n LINES]", "the tail of a service's log", ctl_logs},
    {"scale", "SERVICE WORKERS", "set a module= service's workers", ctl_scale},
};

#define N_COMMANDS (sizeof commands / sizeof *commands)

static void usage(FILE *f)
{
    fprintf(f, "usage: shmrpcctl COMMAND [ARGS]\n\n");
    for (size_t i = 0; i < N_COMMANDS; i++) {
        const command *c = &commands[i];
        char head[64];
        snprintf(head, sizeof head, "%s %s", c->name, c->args);
        fprintf(f, "  %-44s %s\n", head, c->help);
    }
    fprintf(f,
            "\nstatus to scale reach the supervisor named by -a ADDRESS or --ini FILE after the\n"
            "command, or $SHMRPC_CONTROL or $SHMRPC_INI.\n"
            "exit status: 0 done, 1 failed, 2 bad usage or input. See docs/shmrpcctl.md.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0) {
        printf("shmrpcctl %s\n", SHMRPC_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++) {
        const command *c = &commands[i];
        if (strcmp(c->name, name) == 0) return c->run(argc - 1, argv + 1);
    }
    fprintf(stderr, "shmrpcctl: unknown command '%s'\n", name);
    usage(stderr);
    return 2;
}
