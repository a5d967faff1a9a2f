#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Every path of the repository that a document names exists: the README, every .md file
of the tree (docs/, tests/mutants/README.md, ...) and the `file:` lines of
tests/mutants/*.mut. Fails naming document, line and path.
What counts as a path: a word that starts with a top-level folder of the repository
(runtime/, tests/, docs/, ...) or ends in a source or document suffix (.c .h .md .py .sh
.svc .ini .cmake ...). It is looked for beside the document, then from the top of the
repository; a partial path (shmrpc/tcp.h) may be the end of any path in the repository, and
a bare file name (queue.c) the name of any file in it. Globs (`tests/mutants/*.mut`,
`runtime/src/*.{c,h}`) must match something, and `...` stands for any folders
(`runtime/src/.../wait.c`) or, at the end, for what is in a folder. A file the build makes
counts when its source is there (X from X.in, grammar.c from grammar.y, lexer.c from
lexer.re). Not checked: URLs and addresses (x://...), absolute paths (/dev/shm, /etc, /usr:
the system's, not the repository's), build outputs (build/, build-asan/, ..., *.o, *.gcda),
words inside <...> (a system header), manual pages (shmrpc-service.ini(5)), names with a
placeholder in capitals that do not exist as written (NAME_client.c, LOG_DIR/NAME.log),
inside a fenced code block any name that does not start from the top (the user's files of
an example: app.c, gen/echo.h), and the files named in NOT_OURS below.
Usage: check_doc_paths.py [REPO]   (default: the repository this script is in)"""
import fnmatch
import glob
import os
import re
import sys

SUFFIXES = (".c", ".h", ".md", ".py", ".sh", ".svc", ".ini", ".cmake", ".mut", ".y", ".re",
            ".mjs", ".scd")
BUILT = (".o", ".a", ".so", ".gcda", ".gcno", ".log")  # what a build or a run writes
SKIP_DIRS = {".git", "node_modules", "__pycache__"}
# Files that the documents name in prose and that are not the repository's: a user's.
NOT_OURS = {
    "my_service.py",  # docs/python.md: `exec = python3 my_service.py`
    "parts.h",  # docs/tutorial.md: what shmrpcgen writes for the reader's parts.svc
}
WORD = re.compile(r"[^\s`'\"()\[\]|;<>,]*\{[^}\s]*\}[^\s`'\"()\[\]|;<>,]*|[^\s`'\"()\[\]|;<>,]+")
PLACEHOLDER = re.compile(r"(?<![a-z])[A-Z][A-Z0-9]+(?![a-z])")


class Repo:
    def __init__(self, root):
        self.root = root
        self.top = set()
        self.files = []  # every file and folder, by its path from the root
        for d, dirs, names in os.walk(root):
            dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS and not
                             (d == root and x.startswith("build")))
            rel = os.path.relpath(d, root)
            if rel == ".":
                self.top = set(dirs)
                continue
            self.files.append(rel)
            self.files.extend(os.path.join(rel, n) for n in names)
        self.names = {}
        for f in self.files:
            self.names.setdefault(os.path.basename(f), []).append(f)

    def exists(self, path, doc_dir):
        """Whether PATH names something in the repository, seen from DOC_DIR."""
        if any(c in path for c in "*?[{") or "..." in path:
            return self.matches(path, doc_dir)
        for base in (doc_dir, ""):
            full = os.path.normpath(os.path.join(self.root, base, path))
            if not os.path.relpath(full, self.root).startswith("..") and made(full):
                return True
        if path.split("/")[0] in self.top:
            return False  # a path from the top that is not there
        if "/" in path:
            tail = "/" + path.strip("/")
            return any(f.endswith(tail) for f in self.files)
        return path in self.names

    def matches(self, path, doc_dir):
        """A glob, with {a,b} and `...`: whether it matches anything."""
        for p in braces(path):
            p = re.sub(r"/\.\.\.$", "", p)  # runtime/src/...: the folder
            p = p.replace("/.../", "/**/").replace(".../", "**/")
            for base in (doc_dir, ""):
                if glob.glob(os.path.join(self.root, base, p), recursive=True):
                    return True
            if p.split("/")[0] not in self.top:
                if any(fnmatch.fnmatchcase(f, "*" + p.replace("**/", "")) for f in self.files):
                    return True
        return False


def made(full):
    """Whether FULL is in the tree, or is what the build makes from a file there: X from
    X.in (configure_file), grammar.c from grammar.y (lemon), lexer.c from lexer.re (re2c)."""
    stem, ext = os.path.splitext(full)
    sources = [full, full + ".in"] + ([stem + ".y", stem + ".re"] if ext in (".c", ".h") else [])
    return any(os.path.exists(x) for x in sources)


def braces(p):
    m = re.search(r"\{([^{}]*)\}", p)
    if not m:
        return [p]
    return [q for alt in m.group(1).split(",") for q in braces(p[:m.start()] + alt + p[m.end():])]


def candidate(word, top):
    """The path WORD names, or None when it names none of ours."""
    if "/" not in word and "." not in word and "…" not in word:
        return None  # most words: quickly
    word = word.replace("…", "...")
    word = word.strip("*")
    if not word.endswith("..."):
        word = word.rstrip(".:!?")
    word = re.sub(r"#.*$", "", word)  # wire.md#calls-in-flight
    word = re.sub(r":\d.*$", "", word)  # queue.c:120
    if not word or "://" in word or word[0] in "/~$@-":
        return None
    if word[0] == "." and not word.startswith(("./", "../")) and word.split("/")[0] not in top:
        return None  # .svc, .ci/ aside
    if "=" in word or word.startswith(("http:", "https:", "mailto:")):
        return None
    first = word.split("/")[0]
    if first.startswith("build") or word.endswith(BUILT):
        return None
    if first in top and "/" in word:
        return word
    if word.endswith(SUFFIXES) or re.search(r"\.\{[a-z,]+\}$", word):
        return word
    return None


def check_text(repo, doc, lines, problems):
    doc_dir = os.path.dirname(doc)
    code = False
    for n, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            code = not code
            continue
        for m in WORD.finditer(line):
            s, e = m.span()
            if s > 0 and line[s - 1] == "<" and line[e:e + 1] == ">":
                continue  # <stdio.h>
            if re.match(r"\(\d\)", line[e:]):
                continue  # shmrpc-service.ini(5): a manual page
            path = candidate(m.group(0), repo.top)
            if path is None or path in NOT_OURS:
                continue
            if code and path.split("/")[0] not in repo.top:
                continue  # in a program or a session, a bare name is the user's file
            if repo.exists(path, doc_dir):
                continue
            if PLACEHOLDER.search(path):
                continue  # NAME_client.c: what a user's NAME.svc gives
            problems.append((doc, n, path))


def documents(repo):
    for f in repo.files:
        if f.endswith(".md") and not f.startswith(("third_party/", "debian/")):
            yield f


def main(argv):
    root = argv[0] if argv else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    repo = Repo(root)
    problems = []
    docs = sorted(documents(repo))
    for doc in docs:
        with open(os.path.join(root, doc), encoding="utf-8") as f:
            check_text(repo, doc, f.read().splitlines(), problems)
    muts = sorted(f for f in repo.files if f.startswith("tests/mutants/") and f.endswith(".mut"))
    for mut in muts:
        with open(os.path.join(root, mut), encoding="utf-8") as f:
            for n, line in enumerate(f.read().splitlines(), 1):
                if line.startswith("file:"):
                    path = line[len("file:"):].strip()
                    if not os.path.isfile(os.path.join(root, path)):
                        problems.append((mut, n, path))
    for doc, n, path in problems:
        elsewhere = repo.names.get(os.path.basename(path.rstrip("/")), [])
        hint = " (a file of that name: %s)" % ", ".join(elsewhere[:3]) if elsewhere else ""
        print("%s:%d: names %s, which is not in the repository%s" % (doc, n, path, hint))
    if problems:
        print("check_doc_paths: %d paths named that do not exist" % len(problems))
        return 1
    print("every path named in %d documents and %d .mut files exists" % (len(docs), len(muts)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
