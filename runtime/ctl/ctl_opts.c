/* SPDX-License-Identifier: MIT */
/* The options shmrpcctl queue and map take after their subcommand (ctl_opts.h), read with
 * getopt_long. */
#include "ctl_opts.h"

#include <getopt.h>
#include <stdlib.h>

int ctl_opts_read(int argc, char **argv, unsigned knows, unsigned takes, ctl_opts *o)
{
    enum { OPT_JSON = 256, OPT_BYTES, OPT_BASE64, OPT_TIMEOUT };
    static const struct {
        unsigned set;
        struct option opt;
    } all[] = {
        {CTL_OPT_JSON, {"json", no_argument, NULL, OPT_JSON}},
        {CTL_OPT_FORM, {"bytes", no_argument, NULL, OPT_BYTES}},
        {CTL_OPT_FORM, {"base64", no_argument, NULL, OPT_BASE64}},
        {CTL_OPT_TIMEOUT, {"timeout", required_argument, NULL, OPT_TIMEOUT}},
    };
    /* Only the command's own, so that another is unrecognized as getopt says it. */
    struct option longopts[sizeof all / sizeof all[0] + 2];
    size_t n = 0;
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++)
        if (knows & all[k].set) longopts[n++] = all[k].opt;
    longopts[n++] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[n] = (struct option){NULL, 0, NULL, 0};
    *o = (ctl_opts){.form = CTL_FORM_AUTO};
    /* After the subcommand (argv + 1 is its own list; optind 0 starts getopt afresh); '+': the
     * options end at NAME, so that a KEY or VALUE such as -1 is no option. */
    optind = 0;
    for (int opt; (opt = getopt_long(argc - 1, argv + 1, "+h", longopts, NULL)) != -1;) {
        if (opt == OPT_JSON && (takes & CTL_OPT_JSON)) {
            o->json = true;
        } else if (opt == OPT_BYTES && (takes & CTL_OPT_FORM)) {
            o->form = CTL_FORM_BYTES;
        } else if (opt == OPT_BASE64 && (takes & CTL_OPT_FORM)) {
            o->form = CTL_FORM_BASE64;
        } else if (opt == OPT_TIMEOUT && (takes & CTL_OPT_TIMEOUT)) {
            char *end;
            long long v = strtoll(optarg, &end, 10);
            if (*end != '\0' || end == optarg || v < -1) {
                o->why = "--timeout takes milliseconds (0: try once, -1: forever)";
                return -1;
            }
            o->ms = v;
        } else if (opt == 'h') {
            o->help = true;
            return 0;
        } else {
            return -1;
        }
    }
    return optind + 1;
}
