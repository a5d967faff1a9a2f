#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Every source file of ours says its license in its first lines (SPDX-License-Identifier:
MIT): `spdx.py --check DIR` lists those that do not and exits 1; `spdx.py --fix DIR` adds
the line (after a #! line), as a C comment or a # comment by the file's kind. What is not
ours (third_party/, debian/), what the generator writes (golden/) and test inputs (corpus/,
.svc, .ini, .err) are left alone."""
import os
import sys

TAG = "SPDX-License-Identifier: MIT"
SKIP_DIRS = {".git", "third_party", "golden", "corpus", "node_modules", "debian", "__pycache__"}
C_LIKE = (".c", ".h", ".cpp", ".y", ".re", ".js", ".mjs", ".css", ".map")
HASH = (".sh", ".cmake", ".py", ".cmake.in", ".pc.in")
HASH_NAMES = ("CMakeLists.txt", "Makefile")


def kind(name):
    if name.endswith(C_LIKE):
        return "c"
    if name.endswith(HASH) or name in HASH_NAMES:
        return "#"
    return None


def files(root):
    for d, dirs, names in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS and not x.startswith("build"))
        for n in sorted(names):
            k = kind(n)
            if k:
                yield os.path.join(d, n), k


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("--check", "--fix"):
        sys.stderr.write("usage: spdx.py --check|--fix DIR\n")
        return 2
    fix, missing = sys.argv[1] == "--fix", []
    for path, k in files(sys.argv[2]):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if TAG in text[:400]:
            continue
        missing.append(path)
        if not fix:
            continue
        line = "/* %s */\n" % TAG if k == "c" else "# %s\n" % TAG
        at = text.index("\n") + 1 if text.startswith("#!") else 0
        with open(path, "w", encoding="utf-8") as f:
            f.write(text[:at] + line + text[at:])
    for path in missing:
        print(("added to " if fix else "no SPDX line: ") + os.path.relpath(path, sys.argv[2]))
    return 0 if fix or not missing else 1


if __name__ == "__main__":
    sys.exit(main())
