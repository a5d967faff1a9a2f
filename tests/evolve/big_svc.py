#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes big.svc: a service of 100 structs and 300 methods (issue 36) whose method table,
with every signature spelling out each struct it reaches (descriptor version 1), needed
more than the 1 MiB a tcp:// handshake carries; described once per type it needs ~40 KB.

usage: big_svc.py OUT.svc OUT_HANDLERS.c

OUT_HANDLERS.c holds big_handlers, a handler per method: call<m>(a, n) answers the struct
of its result type with id a->id + n and name "call<m>".
"""
import sys

STRUCTS, METHODS = 100, 300


def main():
    out = ["/// 100 structs, 300 methods: each method reaches many structs (issue 36).",
           "service Big {", '    name "big_serv";', "    port 5599;", ""]
    out.append("    enum Kind { plain, rich, odd }")
    for i in range(STRUCTS):
        fields = ["i64 id", "string name", "f64 weight", "Kind kind"]
        if i > 0:
            fields.append(f"list<S{i - 1}> prev")
        if i > 1:
            fields.append(f"S{i // 2}? half")
        out.append(f"    struct S{i} {{ " + " ".join(f + ";" for f in fields) + " }")
    out.append("")
    for m in range(METHODS):
        out.append(f"    S{m % STRUCTS} call{m}(S{(m * 7) % STRUCTS} a, i64 n);")
    out.append("}")
    with open(sys.argv[1], "w") as f:
        f.write("\n".join(out) + "\n")
    h = ["/* SPDX-License-Identifier: MIT */",
         "/* Written by big_svc.py: a handler per method of big.svc. */",
         "#include <string.h>", "", '#include "big.h"', ""]
    for m in range(METHODS):
        r, a = m % STRUCTS, (m * 7) % STRUCTS
        h += [f"static int h{m}(shmrpc_ctx *ctx, const big_S{a} *a, int64_t n, big_S{r} *out)",
              "{", "    (void)ctx;", "    memset(out, 0, sizeof *out);",
              "    out->id = a->id + n;", f'    out->name = shmrpc_str_c("call{m}");',
              "    return 0;", "}", ""]
    h.append("const Big_handlers big_handlers = {")
    h += [f"    .call{m} = h{m}," for m in range(METHODS)]
    h.append("};")
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(h) + "\n")


if __name__ == "__main__":
    main()
