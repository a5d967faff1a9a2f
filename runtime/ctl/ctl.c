/* SPDX-License-Identifier: MIT */
/* shmrpcctl: the operator's tool. One table of subcommands; status, start, stop, restart,
 * logs and scale talk to the supervisor's control service (ctl_control.c). */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <shmrpc/version.h>

#include "ctl_call.h"
#include "ctl_control.h"
#include "ctl_describe.h"
#include "ctl_health.h"
#include "ctl_map.h"
#include "ctl_opts.h"
#include "ctl_queue.h"
#include "ctl_segments.h"
#include "usage.h"

typedef struct command {
    const char *name;
    const char *args;
    const char *help;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand */
    bool supervisor;                   /* talks to shmrpc-service: takes -a and --ini */
} command;

static const command commands[] = {
    {"call", "ADDRESS METHOD [ARGS-AS-JSON|-]",
     "call a method of a running service; print its result as JSON", ctl_call_main, false},
    {"list", "ADDRESS", "the methods of a running service", ctl_list_main, false},
    {"describe", "ADDRESS [NAME]", "a running service as a .svc file, or its method or type NAME",
     ctl_describe_main, false},
    {"health", "[--json] [--timeout MS] ADDRESS",
     "a service's health: serving (exit 0), not_serving, draining or unreachable (1)",
     ctl_health_main, false},
    {"ls", "[--json] [NAME...]", "list shmrpc segments with their owners", ctl_ls_main, false},
    {"clean", "[--dry-run] [NAME...]", "remove segments whose owner is dead", ctl_clean_main,
     false},
    {"queue", "stat|peek|push|pop|repair NAME [VALUE|-]",
     "a shared-memory queue: its counters, or one message (JSON when typed)", ctl_queue_main,
     false},
    {"map", "stat|get|put|del|keys NAME [KEY [VALUE|-]]",
     "a shared map: its counters, or entries (JSON when typed)", ctl_map_main, false},
    /* These talk to shmrpc-service's control service (ctl_control.c), found by -a ADDRESS,
     * --ini FILE (before or after the command), $SHMRPC_CONTROL or $SHMRPC_INI, else the
     * registry of the supervisors that run (registry.h). */
    {"status", "[--json] [SERVICE...]", "the supervisor's services", ctl_status, true},
    {"start", "SERVICE [--no-wait] [--json]", "start a service of the supervisor", ctl_start, true},
    {"stop", "SERVICE [--no-wait] [--json]", "stop a service of the supervisor", ctl_stop, true},
    {"restart", "SERVICE [--no-wait] [--json]", "restart a service of the supervisor", ctl_restart,
     true},
    {"logs", "SERVICE [-n LINES] [-f|--follow|--json]",
     "the tail of a service's log; -f: and what follows", ctl_logs, true},
    {"scale", "SERVICE WORKERS [--json]", "set a service's workers", ctl_scale, true},
};

#define N_COMMANDS (sizeof commands / sizeof *commands)

static void usage(FILE *f)
{
    fprintf(f, "usage: shmrpcctl [-a ADDRESS | --ini FILE] COMMAND [ARGS]\n"
               "       shmrpcctl --help | --version\n\n");
    for (size_t i = 0; i < N_COMMANDS; i++) {
        const command *c = &commands[i];
        char head[64];
        snprintf(head, sizeof head, "%s %s", c->name, c->args);
        fprintf(f, "  %-44s %s\n", head, c->help);
    }
    fprintf(f,
            "\nstatus to scale reach the supervisor named by -a ADDRESS or --ini FILE (before or\n"
            "after the command), or $SHMRPC_CONTROL or $SHMRPC_INI, else the one of this user\n"
            "that runs (the registry of supervisors: docs/shmrpcctl.md).\n"
            "exit status: 0 done, 1 failed, 2 bad usage or input. See docs/shmrpcctl.md.\n");
}

int main(int argc, char **argv)
{
    const char *addr = NULL, *ini = NULL;
    enum { OPT_INI = 256 };
    static const struct option longopts[] = {
        {"address", required_argument, NULL, 'a'},
        {"ini", required_argument, NULL, OPT_INI},
        SHMRPC__OPTS_HELP_VERSION,
        {NULL, 0, NULL, 0},
    };
    /* shmrpcctl's own options end at the command ('+'); the command reads the rest. ':'
     * after it: getopt_long says nothing itself (shmrpc__opt_default does, on one line). */
    for (int opt; (opt = getopt_long(argc, argv, "+:a:h", longopts, NULL)) != -1;) {
        switch (opt) {
        case 'a':
            addr = optarg;
            break;
        case OPT_INI:
            ini = optarg;
            break;
        default:
            return shmrpc__opt_default(opt, argv, "shmrpcctl", SHMRPC_VERSION_STRING, usage);
        }
    }
    if (optind >= argc) return shmrpc__usage_by(false, usage);
    const char *name = argv[optind];
    if (strcmp(name, "help") == 0) return shmrpc__usage_by(true, usage);
    for (size_t i = 0; i < N_COMMANDS; i++) {
        const command *c = &commands[i];
        if (strcmp(c->name, name) != 0) continue;
        if ((addr || ini) && !c->supervisor) {
            fprintf(stderr,
                    "shmrpcctl: -a and --ini before the command name a supervisor, for status, "
                    "start, stop, restart, logs and scale; %s takes its address after it\n",
                    name);
            return 2;
        }
        ctl_control_target(addr, ini);
        return c->run(argc - optind, argv + optind);
    }
    char why[300];
    snprintf(why, sizeof why, "unknown command '%.200s'", name);
    return shmrpc__usage_error("shmrpcctl", NULL, why);
}
