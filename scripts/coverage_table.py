#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Prints gcovr's figures (scripts/coverage.sh) per folder: `coverage_table.py SUMMARY.json
[FULL.json]`, SUMMARY from gcovr --json-summary, FULL (optional) from gcovr --json. Then the
files with the lowest line coverage, and, with FULL, the functions of runtime/ that leave the
most lines unrun."""
import json
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


if __name__ == "__main__":
    main()
