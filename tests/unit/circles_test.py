#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""No circles between files: within each target, file A uses file B when A's object uses
(nm -u) a symbol that B's object defines; a circle is a strongly connected component of
more than one file. Fails listing each circle, with the symbols that close it, unless
docs/architecture.md names it in a line of the form
    - circle: runtime/x/a.c runtime/x/b.c — why it stays
(the files by their paths in the repository, in any order, then " — " or " -- " and the
reason); fails too on such a line that names no circle any more.
Usage: circles_test.py [--allow ARCHITECTURE_MD] SOURCE_ROOT BUILD_ROOT OBJECT...
The objects are $<TARGET_OBJECTS:...> of any targets; each object's target comes from its
path (CMakeFiles/NAME.dir/), and its file from its path below the build root."""
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from nm_symbols import symbols  # noqa: E402 (beside this script)

ALLOW = re.compile(r"^\s*[-*]\s+circle:\s+(.+?)\s+(?:—|--)\s+(\S.*)$")


def object_file(obj, build_root):
    """(target, the file's path in the repository) of OBJ, or None."""
    rel = os.path.relpath(os.path.abspath(obj), os.path.abspath(build_root)).replace(os.sep, "/")
    m = re.match(r"^(?:(.*)/)?CMakeFiles/([^/]+)\.dir/(.*)\.o$", rel)
    if not m:
        return None
    folder, target, src = m.groups()
    src = "/".join(".." if part == "__" else part for part in src.split("/"))
    return target, os.path.normpath(os.path.join(folder or ".", src))


def shown(path, source_root):
    """PATH for the report: marked when the build wrote it (grammar.c, a stub, assets)."""
    return path if os.path.isfile(os.path.join(source_root, path)) else path + " (generated)"


def components(nodes, edges):
    """Tarjan's strongly connected components of the graph, iteratively."""
    index, low, on, stack, out = {}, {}, set(), [], []
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(comp)
    return out


def allowed(doc):
    """The circles DOC names: [(set of files, line number)]."""
    out = []
    with open(doc, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            m = ALLOW.match(line)
            if m:
                out.append((frozenset(x.strip("`,") for x in m.group(1).split()), n))
    return out


def main(argv):
    doc = None
    if argv[:1] == ["--allow"] and len(argv) >= 2:
        doc, argv = argv[1], argv[2:]
    if len(argv) < 3:
        sys.stderr.write("usage: circles_test.py [--allow ARCHITECTURE_MD] SOURCE_ROOT "
                         "BUILD_ROOT OBJECT...\n")
        return 2
    source_root, build_root, objs = argv[0], argv[1], argv[2:]
    problems = 0
    where = {}
    for o in objs:
        w = object_file(o, build_root)
        if w is None:
            print("%s: cannot tell its target and file from its path" % o)
            problems += 1
        else:
            where[o] = w
    defined, used = symbols(list(where))
    targets = sorted({t for t, _ in where.values()})
    circles = {}  # frozenset of files -> (target, [(file, file it uses, symbols)])
    for target in targets:
        mine = [o for o in where if where[o][0] == target]
        owner = {}
        for o in mine:
            for name in defined[o]:
                owner.setdefault(name, set()).add(o)
        uses = {}  # (a, b) -> the symbols a uses of b
        for o in mine:
            for name in used[o]:
                for d in owner.get(name, ()):
                    if d != o:
                        uses.setdefault((where[o][1], where[d][1]), set()).add(name)
        edges = {}
        for a, b in uses:
            edges.setdefault(a, set()).add(b)
        for comp in components(sorted(where[o][1] for o in mine), edges):
            if len(comp) > 1:
                key = frozenset(comp)
                inside = sorted((a, b, sorted(s)) for (a, b), s in uses.items()
                                if a in key and b in key)
                circles.setdefault(key, (target, inside))
    named = allowed(doc) if doc else []
    allow = {files for files, _ in named}
    seen = {where[o][1] for o in where}
    for key in sorted(circles, key=sorted):
        target, inside = circles[key]
        if key in allow:
            continue
        problems += 1
        print("%s: a circle of %d files: %s" % (target, len(key), " ".join(
            shown(f, source_root) for f in sorted(key))))
        for a, b, names in inside:
            more = " and %d more" % (len(names) - 3) if len(names) > 3 else ""
            print("    %s uses %s: %s%s" % (a, b, ", ".join(names[:3]), more))
    for files, n in named:
        if files <= seen and files not in circles:
            problems += 1
            print("%s:%d: names a circle that is not one (any more): %s"
                  % (doc, n, " ".join(sorted(files))))
    if problems:
        print("circles_test: %d problems; break each circle, or name it with its reason in "
              "docs/architecture.md (\"- circle: FILE FILE... — why\")" % problems)
        return 1
    print("no circles between files in %d targets (%d objects; %d circles named in %s)"
          % (len(targets), len(where), len(named), doc or "no list"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
