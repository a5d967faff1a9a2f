/* SPDX-License-Identifier: MIT */
/* The options every program reads alike, and where its usage goes (usage.h). */
#include "usage.h"

int shmrpc__usage(bool help, const char *text)
{
    fputs(text, help ? stdout : stderr);
    return help ? 0 : 2;
}

int shmrpc__usage_by(bool help, void (*write)(FILE *to))
{
    write(help ? stdout : stderr);
    return help ? 0 : 2;
}

int shmrpc__opt_default(int opt, const char *name, const char *version, void (*usage)(FILE *to))
{
    if (opt != SHMRPC__OPT_VERSION) return shmrpc__usage_by(opt == 'h', usage);
    printf("%s %s\n", name, version);
    return 0;
}
