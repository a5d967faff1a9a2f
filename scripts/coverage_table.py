#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Prints gcovr's figures (scripts/coverage.sh) per folder: `coverage_table.py SUMMARY.json
[FULL.json]`, SUMMARY from gcovr --json-summary, FULL (optional) from gcovr --json. Then the
files with the lowest line coverage, and, with FULL, the functions of runtime/ that leave the
most lines unrun. Last, every line the sources leave out with gcovr's markers (GCOVR_EXCL_LINE,
_BR_LINE, _START/_STOP), each with its reason: a marker without one fails (exit 1)."""
import json
import os
import re
import sys

# The total of the figures (runtime, generator, idl, python) and common/.
TOTAL = ("runtime", "generator", "idl", "python", "common")


def folder(path):
    parts = path.split("/")
    if parts[0] in ("runtime", "python") and len(parts) > 2:
        return "/".join(parts[:2])
    return parts[0] if len(parts) > 1 else "."


def pct(covered, total):
    return "%5.1f%%" % (100.0 * covered / total) if total else "    -"


def row(name, c):
    return "%-32s %6d/%-6d %s   %6d/%-6d %s" % (
        name, c[0], c[1], pct(c[0], c[1]), c[2], c[3], pct(c[2], c[3]))


def add(into, f):
    into[0] += f["line_covered"]
    into[1] += f["line_total"]
    into[2] += f["branch_covered"]
    into[3] += f["branch_total"]


def main():
    files = json.load(open(sys.argv[1]))["files"]
    folders, runtime, total = {}, [0, 0, 0, 0], [0, 0, 0, 0]
    for f in files:
        add(folders.setdefault(folder(f["filename"]), [0, 0, 0, 0]), f)
        top = f["filename"].split("/")[0]
        if top == "runtime":
            add(runtime, f)
        if top in TOTAL:
            add(total, f)
    print("%-32s %-21s %-21s" % ("folder", "lines", "branches"))
    for name in sorted(folders):
        print(row(name, folders[name]))
    print(row("runtime (all)", runtime))
    print(row("total: " + " ".join(TOTAL), total))

    print("\nlowest line coverage (files of 20 lines or more):")
    big = [f for f in files if f["line_total"] >= 20]
    big.sort(key=lambda f: (f["line_covered"] / f["line_total"], -f["line_total"]))
    for f in big[:15]:
        print(row(f["filename"], [f["line_covered"], f["line_total"], f["branch_covered"],
                                  f["branch_total"]]))

    if len(sys.argv) < 3:
        return
    # Each line belongs to the function that starts last before it (gcovr's JSON has no
    # line-to-function map): the functions with the most lines never run.
    unrun = []
    for f in json.load(open(sys.argv[2]))["files"]:
        if not f["file"].startswith("runtime/"):
            continue
        starts = sorted((fn["lineno"], fn["name"]) for fn in f.get("functions", []))
        missed = {}
        for line in f["lines"]:
            if line.get("gcovr/noncode") or line["count"] > 0:
                continue
            owner = None
            for lineno, name in starts:
                if lineno > line["line_number"]:
                    break
                owner = name
            if owner:
                missed[owner] = missed.get(owner, 0) + 1
        unrun += [(n, f["file"], name) for name, n in missed.items()]
    unrun.sort(reverse=True)
    print("\nruntime/: functions with the most lines never run:")
    for n, path, name in unrun[:25]:
        print("%5d  %s: %s" % (n, path, name))


# A marker and the reason after it: "GCOVR_EXCL_LINE: unreachable: why" (the reason may go
# on in the comment's next lines; the first is printed).
MARKER = re.compile(r"GCOVR_EXCL_(LINE|BR_LINE|START|STOP)\b:?\s*(.*?)\s*(\*/)?\s*$")


def excluded(roots):
    """(path, line, kind, reason) of each marker under roots; a STOP needs no reason."""
    found = []
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in sorted(names):
                if not name.endswith((".c", ".h")):
                    continue
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8", errors="replace") as f:
                    for n, text in enumerate(f, 1):
                        m = MARKER.search(text)
                        if m:
                            found.append((path, n, m.group(1), m.group(2)))
    return sorted(found)


def print_excluded():
    marks = excluded([r for r in TOTAL if os.path.isdir(r)])
    print("\nleft out of the figures as unreachable (%d markers):" % len(marks))
    bare = 0
    for path, n, kind, reason in marks:
        if kind == "STOP":
            continue
        if not reason:
            bare += 1
        print("  %s:%d %s: %s" % (path, n, kind, reason or "NO REASON GIVEN"))
    return bare


if __name__ == "__main__":
    main()
    if print_excluded():
        print("coverage_table.py: a line left out must say why (GCOVR_EXCL_...: reason)",
              file=sys.stderr)
        sys.exit(1)
