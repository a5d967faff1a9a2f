#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The mutant kit: tests/mutants/README.md says what it is for and how to add a mutant.

mutants.py [-k] [--no-baseline] [--list] [GLOB...]

Copies the tree once to a scratch directory (build-mutants/src, beside its build in
build-mutants/build; SHMRPC_MUTANTS_DIR names another), configures it once (gcc,
RelWithDebInfo), and for each mutant of tests/mutants/*.mut (those whose id or file name
matches a GLOB, all without one): applies it, rebuilds the programs of the tests it names,
runs those tests until one fails, and puts the line back; then removes the shared memory
that the tests' dead processes left (`shmrpcctl clean`, of the tree without a mutant: a
planted bug may hang a server that a test then kills). Prints a table (mutant, what
caught it, seconds) and a score. Exits 1 when a mutant survived, could not be applied
(its `from` is not in its file exactly once) or did not build; 2 on a usage error or a
baseline that fails.

A mutant with `open:` (why no test catches it yet) is a known gap: left out of the run and
named in the score, unless --open asks for the open ones (alone, or with GLOBs).

-k keeps the scratch directory (a later run then rebuilds only what changed);
--no-baseline skips the first run of the named tests on the tree as it is, which otherwise
shows that they pass before any mutant is judged by them; --list prints the mutants only.
"""
import filecmp
import fnmatch
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ("mutant", "promise", "file", "from", "to", "tests", "env", "build", "timeout", "open")
SKIP_DIRS = {".git", "__pycache__", "node_modules"}
TEST_TIMEOUT = 300  # seconds for one test program, unless a mutant says `timeout:`
BUILD_TIMEOUT = 900


class Mutant:
    def __init__(self, where):
        self.where = where  # "tests/mutants/lock.mut:12"
        self.fields = {}

    def __getattr__(self, key):
        if key in KEYS:
            return self.fields.get(key, "")
        raise AttributeError(key)


def parse(path):
    """The blocks of one .mut file. `key: value` lines; a line that starts with blanks
    continues the value before it (for long promises); # starts a comment line."""
    rel = os.path.relpath(path, ROOT)
    out, cur, last = [], None, None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                last = None if not line.strip() else last
                continue
            if line[0] in " \t":
                if cur is None or last is None or last in ("from", "to"):
                    sys.exit(f"{rel}:{n}: a continuation line where none can be")
                cur.fields[last] += " " + line.strip()
                continue
            m = re.match(r"([a-z]+):(?: (.*))?$", line)
            if not m or m.group(1) not in KEYS:
                sys.exit(f"{rel}:{n}: expected one of {', '.join(k + ':' for k in KEYS)}")
            key, value = m.group(1), m.group(2) or ""
            if key == "mutant":
                cur = Mutant(f"{rel}:{n}")
                out.append(cur)
            elif cur is None:
                sys.exit(f"{rel}:{n}: {key}: before the first mutant:")
            if key in cur.fields:
                sys.exit(f"{rel}:{n}: {key}: twice in one mutant")
            # from: and to: keep their blanks inside; a value never ends in one.
            cur.fields[key] = value if key in ("from", "to") else value.strip()
            last = key
    for m in out:
        for key in ("mutant", "promise", "file", "from", "tests"):
            if not m.fields.get(key):
                sys.exit(f"{m.where}: mutant {m.mutant or '?'} has no {key}:")
        if "to" not in m.fields:
            sys.exit(f"{m.where}: mutant {m.mutant} has no to: (an empty one deletes)")
        if m.fields["from"] == m.fields["to"]:
            sys.exit(f"{m.where}: mutant {m.mutant}: to: is from:")
    return out


def load(globs, want_open=False):
    """The mutants that GLOBs name (all without one), and the open ones left out."""
    mutants, left, seen = [], [], {}
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "mutants", "*.mut"))):
        stem = os.path.basename(path)[:-4]
        for m in parse(path):
            if m.mutant in seen:
                sys.exit(f"{m.where}: mutant {m.mutant} is also at {seen[m.mutant]}")
            seen[m.mutant] = m.where
            if not globs or any(fnmatch.fnmatch(m.mutant, g) or fnmatch.fnmatch(stem, g)
                                for g in globs):
                (mutants if bool(m.open) == want_open else left).append(m)
    return mutants, [m for m in left if m.open]


def sync(src, dst):
    """Makes dst a copy of src's files (not .git, not build*/ at the top; node_modules/ as a
    link to src's). A kept scratch tree gets only the files whose bytes differ, with a new
    time, so that it rebuilds only what changed (and what a run that was stopped left
    mutated)."""
    keep = set()
    for d, dirs, names in os.walk(src):
        rel = os.path.relpath(d, src)
        dirs[:] = [x for x in dirs if x not in SKIP_DIRS and
                   not (rel == "." and (x.startswith("build") or x.startswith("obj-")))]
        os.makedirs(os.path.join(dst, rel), exist_ok=True)
        keep.add(os.path.normpath(os.path.join(dst, rel)))
        # What npm ci installed (tests/browser's playwright-core), which no mutant changes:
        # linked, not copied, so that the browser test runs in the copy as in the tree.
        if os.path.isdir(os.path.join(d, "node_modules")):
            s = os.path.realpath(os.path.join(d, "node_modules"))
            t = os.path.normpath(os.path.join(dst, rel, "node_modules"))
            keep.add(t)
            if not os.path.islink(t) or os.readlink(t) != s:
                if os.path.isdir(t) and not os.path.islink(t):
                    shutil.rmtree(t)
                elif os.path.lexists(t):
                    os.unlink(t)
                os.symlink(s, t)
        for n in names:
            s, t = os.path.join(d, n), os.path.normpath(os.path.join(dst, rel, n))
            keep.add(t)
            if os.path.islink(s):
                if not os.path.islink(t) or os.readlink(t) != os.readlink(s):
                    if os.path.lexists(t):
                        os.unlink(t)
                    os.symlink(os.readlink(s), t)
                continue
            if not os.path.lexists(t):
                shutil.copy2(s, t)
            elif os.path.islink(t) or not filecmp.cmp(s, t, shallow=False):
                os.unlink(t)
                shutil.copyfile(s, t)
                shutil.copymode(s, t)
    for d, dirs, names in os.walk(dst, topdown=False):
        for n in names + dirs:
            t = os.path.normpath(os.path.join(d, n))
            if t not in keep:
                if os.path.isdir(t) and not os.path.islink(t):
                    shutil.rmtree(t)
                else:
                    os.unlink(t)


def run(cmd, timeout, env=None, cwd=None):
    """Runs cmd in its own process group; returns (exit status or None on a timeout,
    output). A timeout kills the whole group."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out.decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        return None, out.decode(errors="replace")
    except BaseException:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        raise


def ctest_tests(build):
    p = subprocess.run(["ctest", "--test-dir", build, "--show-only=json-v1"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, timeout=120)
    rc, out = p.returncode, p.stdout.decode()
    if rc != 0:
        sys.exit("mutants: ctest --show-only failed:\n" + out)
    tests = {}
    for t in json.loads(out)["tests"]:
        tests[t["name"]] = t.get("command") or []
    return tests


def ninja_targets(build):
    """The names of the build's ninja targets (its programs' among them)."""
    rc, out = run(["ninja", "-C", build, "-t", "targets", "all"], 120)
    return {line.split(":", 1)[0] for line in out.splitlines() if ": " in line}


def targets_of(names, tests, build, extra):
    """The ninja targets that build the named tests' programs: each test's command when it is
    a file of the build tree, and a mutant's `build:` targets. A test run by sh or python
    that names none builds everything. Before the first build ctest names no command: a test
    is then taken as named after its target, when there is one (a test that runs another's
    program, as client_stream_test_over_shm runs client_stream_test, has its mutants name
    that program in `build:`)."""
    out = set(extra)
    known = None
    for n in names:
        cmd = tests[n]
        prog = os.path.realpath(cmd[0]) if cmd else ""
        if not cmd:  # not built yet
            if known is None:
                known = ninja_targets(build)
            if n in known:
                out.add(n)
        elif prog.startswith(os.path.realpath(build) + os.sep):
            out.add(os.path.relpath(prog, os.path.realpath(build)))
        elif not extra:
            out.add("all")
    return sorted(out)


def build_targets(build, targets):
    rc, out = run(["nice", "-n", "10", "ninja", "-C", build, "-j2"] + targets, BUILD_TIMEOUT)
    return rc == 0, out


def env_of(m):
    env = dict(os.environ)
    for kv in m.env.split():
        k, _, v = kv.partition("=")
        env[k] = v
    return env


FAIL = re.compile(r"Test\s+#\d+:\s+(\S+)\s+\.*\s*\**\s*(Failed|Timeout|Exception|Not Run|"
                  r"Subprocess aborted|SEGFAULT|Child aborted|Exit code|\w+ killed)")


def run_tests(build, names, env, timeout):
    rx = "^(" + "|".join(re.escape(n) for n in names) + ")$"
    cmd = ["nice", "-n", "10", "ctest", "--test-dir", build, "-R", rx, "-j2",
           "--stop-on-failure", "--timeout", str(timeout), "--output-on-failure"]
    rc, out = run(cmd, timeout * len(names) + 60, env=env)
    failed = []
    for line in out.splitlines():
        f = FAIL.search(line)
        if f and f.group(1) not in failed:
            failed.append(f.group(1) + ("" if f.group(2) == "Failed" else f" ({f.group(2).lower()})"))
    # The cases of a cmocka program that failed, said after its name: queue_test (size_limit).
    cases = []
    for c in re.findall(r"^\[  (?:FAILED|ERROR)   ?\] (\w+)\s*$", out, re.M):
        if c not in cases:
            cases.append(c)
    if failed and cases:
        failed[0] += " (" + ", ".join(cases[:3]) + (", ..." if len(cases) > 3 else "") + ")"
    ran = len(re.findall(r"Test\s+#\d+:", out))
    if rc is None:
        failed = failed or ["ctest timed out"]
    elif rc != 0 and not failed:
        failed = [f"ctest exit {rc}"]
    if rc == 0 and ran == 0:
        failed = ["no test ran"]
    return rc == 0 and ran > 0, failed, out


def main(argv):
    keep, baseline, listing, want_open = False, True, False, False
    globs = []
    for a in argv:
        if a == "-k":
            keep = True
        elif a == "--no-baseline":
            baseline = False
        elif a == "--list":
            listing = True
        elif a == "--open":
            want_open = True
        elif a.startswith("-"):
            sys.stderr.write(__doc__)
            return 2
        else:
            globs.append(a)
    mutants, left_open = load(globs, want_open)
    if not mutants:
        sys.stderr.write("mutants: none matches " + " ".join(globs) + "\n")
        return 2
    if listing:
        for m in mutants:
            print(f"{m.mutant:34} {m.file}  [{m.tests}]")
        for m in left_open:
            print(f"{m.mutant:34} {m.file}  open: {m.open}")
        return 0

    start = time.monotonic()
    scratch = os.environ.get("SHMRPC_MUTANTS_DIR") or os.path.join(ROOT, "build-mutants")
    src, build = os.path.join(scratch, "src"), os.path.join(scratch, "build")
    print(f"== mutants: {len(mutants)}, a scratch tree in {scratch}", flush=True)
    sync(ROOT, src)
    if not os.path.exists(os.path.join(build, "CMakeCache.txt")):
        env = dict(os.environ, CC="gcc")
        rc, out = run(["cmake", "-S", src, "-B", build, "-G", "Ninja",
                       "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DSHMRPC_WERROR=ON",
                       "-DSHMRPC_REQUIRE_PYTHON=ON"], 600, env=env)
        if rc != 0:
            sys.stderr.write(out + "mutants: configure failed\n")
            return 2
    tests = ctest_tests(build)
    for m in mutants:
        unknown = [t for t in m.tests.split() if t not in tests]
        if unknown:
            sys.stderr.write(f"{m.where}: mutant {m.mutant}: no test {' '.join(unknown)} "
                             "in this build\n")
            return 2
    everything = sorted({t for m in mutants for t in targets_of(m.tests.split(), tests, build,
                                                                   m.build.split())})
    ok, out = build_targets(build, everything + ["shmrpcctl"])
    # The clean after each mutant is the unmutated program's: a mutant may be in its code.
    cleaner = os.path.join(scratch, "shmrpcctl-clean")
    if ok:
        shutil.copy2(os.path.join(build, "bin", "shmrpcctl"), cleaner)
    if not ok:
        sys.stderr.write(out[-6000:] + "mutants: the unmutated tree does not build\n")
        return 2
    print(f"   built in {time.monotonic() - start:.0f} s", flush=True)

    if baseline:
        groups = {}
        for m in mutants:
            key = (m.env, m.timeout or str(TEST_TIMEOUT))
            groups.setdefault(key, set()).update(m.tests.split())
        for (envs, timeout), names in sorted(groups.items()):
            t0 = time.monotonic()
            passed, failed, out = run_tests(build, sorted(names), env_of(Mutant("")) if not envs
                                            else env_of(_with_env(envs)), int(timeout))
            print(f"   baseline {envs or '(no env)'}: {len(names)} tests, "
                  f"{'passed' if passed else 'FAILED: ' + ', '.join(failed)} "
                  f"({time.monotonic() - t0:.0f} s)", flush=True)
            if not passed:
                sys.stderr.write(out[-8000:])
                sys.stderr.write("mutants: the tests fail without a mutant; nothing is judged\n")
                return 2

    rows = []
    for i, m in enumerate(mutants, 1):
        t0 = time.monotonic()
        path = os.path.join(src, m.file)
        status, by, detail = judge(m, path, build, tests)
        detail += clean(cleaner)
        secs = time.monotonic() - t0
        rows.append((m, status, by, secs))
        print(f"[{i}/{len(mutants)}] {m.mutant}: {status}{' by ' + by if by else ''} "
              f"({secs:.0f} s)", flush=True)
        if detail:
            sys.stdout.write(detail)
    # The last mutant's test programs were rebuilt with the mutant; put them back so that a
    # kept tree is whole.
    build_targets(build, everything)

    width = max(len(m.mutant) for m, *_ in rows)
    print(f"\n{'mutant':{width}}  {'result':12}  {'caught by':60}  seconds")
    for m, status, by, secs in rows:
        print(f"{m.mutant:{width}}  {status:12}  {by or '-':60}  {secs:7.0f}")
    caught = sum(1 for r in rows if r[1] == "caught")
    bad = [r for r in rows if r[1] != "caught"]
    print(f"\nscore: {caught} of {len(rows)} caught; {len(bad)} not "
          f"({', '.join(f'{m.mutant} {s}' for m, s, *_ in bad) or 'none'}); "
          f"{time.monotonic() - start:.0f} s in all")
    if left_open:
        print(f"open, not judged ({len(left_open)}, tests/mutants/README.md): "
              f"{', '.join(m.mutant for m in left_open)}")
    if not keep:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if bad else 0


def clean(cleaner):
    """Removes the segments whose owner is dead; what it removed, as lines to print."""
    rc, out = run([cleaner, "clean"], 60)
    lines = [l for l in out.splitlines() if l.startswith("removed ")]
    if rc != 0:
        lines.append(f"shmrpcctl clean: exit {rc}: {out.strip()[-300:]}")
    return "".join(f"   cleaned: {l}\n" for l in lines)


def _with_env(envs):
    m = Mutant("")
    m.fields["env"] = envs
    return m


def judge(m, path, build, tests):
    """Applies m, builds, runs, reverts. Returns (status, caught by, detail to print)."""
    try:
        with open(path, encoding="utf-8") as f:
            orig = f.read()
    except OSError as e:
        return "not applied", "", f"   {m.where}: {e}\n"
    n = orig.count(m.fields["from"])
    if n != 1:
        return ("not applied", "",
                f"   {m.where}: from: occurs {n} times in {m.file}, not once: {m.fields['from']!r}\n")
    st = os.stat(path)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(orig.replace(m.fields["from"], m.fields["to"]))
        ok, out = build_targets(build, targets_of(m.tests.split(), tests, build, m.build.split()))
        if not ok:
            return "not building", "", "".join("   | " + l + "\n" for l in out.splitlines()[-15:])
        passed, failed, out = run_tests(build, m.tests.split(), env_of(m),
                                        int(m.timeout or TEST_TIMEOUT))
        if passed:
            return "SURVIVED", "", ""
        return "caught", ", ".join(failed), ""
    finally:
        with open(path, "w", encoding="utf-8") as f:
            f.write(orig)
        # A time after the mutant's, so that the next build compiles the file again.
        now = time.time()
        os.utime(path, (now, max(now, st.st_mtime + 1)))


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
