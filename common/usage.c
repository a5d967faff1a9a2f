/* SPDX-License-Identifier: MIT */
/* The options every program reads alike, and where its usage goes (usage.h). */
#include "usage.h"

#include <string.h>

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

int shmrpc__usage_error(const char *name, const char *cmd, const char *why)
{
    if (cmd)
        fprintf(stderr, "%s: %s: %s (see '%s %s --help')\n", name, cmd, why, name, cmd);
    else
        fprintf(stderr, "%s: %s (see '%s --help')\n", name, why, name);
    return 2;
}

const char *shmrpc__getopt_error(int opt, char **argv, char *out, size_t n)
{
    /* optopt: the short option, a long one's value, or 0 for a long option it does not
     * know; the word before optind: the long option (up to a '='). A short option in a
     * group ("-xq") is named by optopt alone: optind has not passed its word yet. */
    const char *word = optind > 0 ? argv[optind - 1] : "";
    char name[64];
    if (optopt > 0 && optopt < 256 && strncmp(word, "--", 2) != 0)
        snprintf(name, sizeof name, "-%c", optopt);
    else
        snprintf(name, sizeof name, "%.*s", (int)strcspn(word, "="), word);
    snprintf(out, n, opt == ':' ? "option '%s' requires an argument" : "unrecognized option '%s'",
             name);
    return out;
}

int shmrpc__opt_default(int opt, char **argv, const char *name, const char *version,
                        void (*usage)(FILE *to))
{
    char why[128];
    if (opt == '?' || opt == ':')
        return shmrpc__usage_error(name, NULL, shmrpc__getopt_error(opt, argv, why, sizeof why));
    if (opt != SHMRPC__OPT_VERSION) return shmrpc__usage_by(opt == 'h', usage);
    printf("%s %s\n", name, version);
    return 0;
}
