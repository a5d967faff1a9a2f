#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The folders of libshmrpc depend one way, as runtime/src/layers.txt says: each folder's
files include and call only their own folder and the folders its line names. Fails, naming
file and line, on
  - a file in runtime/src/X that includes "Y/..." with Y not allowed for X, or a bare
    "name.h" that lives in another folder (write it as "Y/name.h");
  - an object of folder X that uses (nm -u) a symbol that an object of a folder not
    allowed for X defines;
  - a file or object in no folder of the table, and a line of the table that names no
    folder of it.
Usage: layers_test.py RUNTIME_SRC [OBJECT...]
The objects are $<TARGET_OBJECTS:shmrpc_runtime_objs>; each one's folder comes from its
path (.../shmrpc_runtime_objs.dir/src/core/wait.c.o is core/wait.c's)."""
import fnmatch
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from nm_symbols import symbols  # noqa: E402 (beside this script)

TABLE = "layers.txt"
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')


def rules(lines, where):
    """The table's rules from its lines: [(folder, [pattern...], line number)]; errors
    name WHERE and the line."""
    out, errors = [], []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        folder, colon, uses = line.partition(":")
        folder = folder.strip()
        if not colon or not folder or " " in folder:
            errors.append("%s:%d: not 'FOLDER: FOLDER...': %s" % (where, n, line))
            continue
        if any(f == folder for f, _, _ in out):
            errors.append("%s:%d: %s/ has a line already" % (where, n, folder))
            continue
        out.append((folder, uses.split(), n))
    return out, errors


class Layers:
    def __init__(self, table):
        self.uses = {folder: pats for folder, pats, _ in table}

    def allowed(self, frm, to):
        return to == frm or any(fnmatch.fnmatchcase(to, p) for p in self.uses[frm])

    def says(self, frm):
        """What FRM may use, for a report."""
        if not self.uses[frm]:
            return "%s/ may use no other folder" % frm
        return "%s/ may use only %s" % (frm, " ".join(self.uses[frm]))


def sources(src):
    for d, dirs, names in os.walk(src):
        dirs.sort()
        for n in sorted(names):
            if n.endswith((".c", ".h")):
                yield os.path.relpath(os.path.join(d, n), src)


def check_includes(src, layers, errors):
    """Every #include "..." of every file under SRC; returns how many files it read."""
    by_name = {}  # a header's file name -> its paths under SRC
    files = list(sources(src))
    for rel in files:
        if rel.endswith(".h"):
            by_name.setdefault(os.path.basename(rel), []).append(rel)
    for rel in files:
        folder = os.path.dirname(rel)
        if folder not in layers.uses:
            errors.append("runtime/src/%s: in no folder of runtime/src/%s" % (rel, TABLE))
            continue
        with open(os.path.join(src, rel), encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
        for n, line in enumerate(lines, 1):
            m = INCLUDE.match(line)
            if m:
                check_include(src, layers, rel, folder, n, m.group(1), by_name, errors)
    return len(files)


def check_include(src, layers, rel, folder, n, name, by_name, errors):
    where = "runtime/src/%s:%d" % (rel, n)
    # As the compiler looks: the including file's folder first, then runtime/src.
    target = None
    for base in (os.path.join(src, folder), src):
        path = os.path.normpath(os.path.join(base, name))
        if os.path.isfile(path):
            target = os.path.relpath(path, src)
            break
    if target is None or target.startswith(".."):
        others = [p for p in by_name.get(name, []) if os.path.dirname(p) != folder]
        if "/" not in name and others:
            bad = [p for p in others if not layers.allowed(folder, os.path.dirname(p))]
            if bad:
                errors.append('%s: includes "%s", which is %s: %s' % (where, name, bad[0],
                                                                   layers.says(folder)))
            else:
                errors.append('%s: includes "%s" by its bare name; it is %s: write "%s"'
                              % (where, name, " or ".join(others), others[0]))
        return  # a header from elsewhere (common/, the public API, a library)
    to = os.path.dirname(target)
    if to not in layers.uses:
        errors.append('%s: includes "%s", which is in no folder of runtime/src/%s'
                      % (where, name, TABLE))
    elif not layers.allowed(folder, to):
        errors.append('%s: includes "%s": %s' % (where, name, layers.says(folder)))


def object_source(obj):
    """The source that OBJ was compiled from, by its path from runtime/ (the target's
    folder: "src/core/wait.c", or "../common/utf8.c" for a file built in from outside
    runtime/src), or None."""
    m = re.search(r"\.dir/(.*)\.o$", obj.replace(os.sep, "/"))
    if not m:
        return None
    parts = [p for p in m.group(1).split("/") if p not in ("", ".")]
    return "/".join(".." if p == "__" else p for p in parts)


def first_line(path, name):
    """The first line of PATH that names NAME, for the report; 0 when none does."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                if re.search(r"\b%s\b" % re.escape(name), line):
                    return n
    except OSError:
        pass
    return 0


def check_objects(src, layers, objs, errors):
    """Each object's uses of the others. One compiled from outside runtime/src (common/'s
    utf8.c) is in no layer: every folder may use it, and it may use none."""
    defined, used = symbols(objs)
    runtime = os.path.dirname(os.path.abspath(src))
    top = os.path.dirname(runtime)
    rel, path = {}, {}  # object -> its folder under runtime/src (None: outside), its source
    for o in objs:
        r = object_source(o)
        if r is None:
            errors.append("%s: cannot tell its source from its path" % o)
            continue
        path[o] = os.path.normpath(os.path.join(runtime, r))
        if not r.startswith("src/"):
            rel[o] = None
        elif os.path.dirname(r[len("src/"):]) not in layers.uses:
            errors.append("runtime/%s (%s): in no folder of runtime/src/%s" % (r, o, TABLE))
        else:
            rel[o] = os.path.dirname(r[len("src/"):])
    owner = {}
    for o in rel:
        for name in defined[o]:
            owner.setdefault(name, []).append(o)
    for o in sorted(rel, key=lambda x: path[x]):
        folder = rel[o]
        for name in sorted(used[o]):
            for d in owner.get(name, []):
                to = rel[d]
                if to is None or (folder is not None and layers.allowed(folder, to)):
                    continue
                n = first_line(path[o], name)
                says = layers.says(folder) if folder is not None else \
                    "a file from outside runtime/src may use none of its folders"
                errors.append("%s%s: uses %s, which %s defines: %s"
                              % (os.path.relpath(path[o], top), ":%d" % n if n else "", name,
                                 os.path.relpath(path[d], top), says))


def main(argv):
    if not argv or argv[0].startswith("-"):
        sys.stderr.write("usage: layers_test.py RUNTIME_SRC [OBJECT...]\n")
        return 2
    src, objs = argv[0], argv[1:]
    path = os.path.join(src, TABLE)
    with open(path, encoding="utf-8") as f:
        table, errors = rules(f.read().splitlines(), path)
    layers = Layers(table)
    for folder, pats, n in table:
        for p in pats:
            if not any(fnmatch.fnmatchcase(f, p) for f, _, _ in table):
                errors.append("%s:%d: %s/ may use %s, which names no folder of the table"
                              % (path, n, folder, p))
    files = check_includes(src, layers, errors)
    if objs:
        check_objects(src, layers, objs, errors)
    for e in errors:
        print(e)
    if errors:
        print("layers_test: %d problems (runtime/src/%s says which folder may use which)"
              % (len(errors), TABLE))
        return 1
    print("the folders of runtime/src depend as runtime/src/%s says: %d files, %d objects"
          % (TABLE, files, len(objs)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
