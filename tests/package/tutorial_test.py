# SPDX-License-Identifier: MIT
"""docs/tutorial.md, run: its files written and its commands typed in an empty folder, in one
shell, each command's output compared with what the page shows under it ('…' stands for
any text on a line, or alone for any lines). shmrpc is installed into a scratch prefix, as
a user's would be (PATH, CMAKE_PREFIX_PATH, PYTHONPATH), and XDG_RUNTIME_DIR is the test's
own, so that shmrpcctl finds this supervisor alone. A command right after one the page
starts in the background (&) is typed again until it prints what the page shows, 20 s at
most: a reader takes that moment to type it. Every process it started is killed at the end,
and the service's segments removed, even on failure.
    python3 tutorial_test.py TUTORIAL_MD BUILD_DIR"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

MARK = "@@tutorial_test@@"


def blocks(text):
    """The page's fenced blocks in order: ("file", name, body) and ("console", body)."""
    for info, body in re.findall(r"^```([^\n]*)\n(.*?)^```$", text, re.S | re.M):
        m = re.search(r"\bfile=(\S+)", info)
        if m:
            yield ("file", m.group(1), body)
        elif info.strip() == "console":
            yield ("console", None, body)


def commands(body):
    """A console block's commands, each with the lines the page shows under it."""
    out = []
    for line in body.splitlines():
        if line.startswith("$ "):
            out.append([line[2:], []])
        elif out:
            out[-1][1].append(line)
    return out


def matches(shown, got):
    """Whether the lines got are what the lines shown say: '…' in a line is any text, a
    line of '…' alone any lines."""
    if not shown:
        return not got
    if shown[0] == "…":
        return any(matches(shown[1:], got[i:]) for i in range(len(got) + 1))
    if not got:
        return False
    pattern = ".*".join(re.escape(part) for part in shown[0].split("…"))
    return re.fullmatch(pattern, got[0]) is not None and matches(shown[1:], got[1:])


class Shell:
    """One sh, as the reader's terminal: cd, $! and background jobs carry from one command
    to the next. Each command's output (stdout and stderr) ends at a marker line."""

    def __init__(self, cwd, env):
        self.proc = subprocess.Popen(["sh"], cwd=cwd, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True, text=True, bufsize=1)

    def run(self, command, timeout=120):
        self.proc.stdin.write(f"{command}\nprintf '\\n{MARK} %d\\n' $?\n")
        self.proc.stdin.flush()
        lines, end = [], time.monotonic() + timeout
        while True:
            line = self.proc.stdout.readline()
            if not line or time.monotonic() > end:
                raise RuntimeError(f"no end of: {command}\n" + "".join(lines))
            if line.startswith(MARK):
                status = int(line.split()[1])
                if lines and lines[-1] == "\n":
                    lines.pop()  # the marker's own line end
                elif lines:
                    lines[-1] = lines[-1].rstrip("\n")
                return status, "".join(lines).splitlines()
            lines.append(line)

    def kill(self, registry):
        """Ends what the page left running: each supervisor the registry lists by SIGTERM
        (it stops its services, which lead process groups of their own), 10 s at most,
        then SIGKILL; then the shell's group (what it started in the background)."""
        pids = [int(f.split(".")[0]) for f in os.listdir(registry) if f.endswith(".sup")] \
            if os.path.isdir(registry) else []
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + 10
            while pids and time.monotonic() < end and any(alive(p) for p in pids):
                time.sleep(0.1)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def alive(pid):
    """Whether pid runs (a zombie, which the shell has not reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def main():
    tutorial, build = sys.argv[1], sys.argv[2]
    with open(tutorial) as f:
        text = f.read()
    tmp = tempfile.mkdtemp(prefix="shmrpc-tutorial-")
    prefix = os.path.join(tmp, "prefix")
    subprocess.run(["cmake", "--install", build, "--prefix", prefix], check=True,
                   stdout=subprocess.DEVNULL)
    pylib = next((os.path.join(d, "") for d, _, files in os.walk(prefix)
                  if "__init__.py" in files and d.endswith("/shmrpc")), None)
    # The installation's programs, then this test's python3 (the one the module was built
    # for), then the rest.
    path = f"{prefix}/bin:{os.path.dirname(sys.executable)}:{os.environ['PATH']}"
    env = dict(os.environ, PATH=path, CMAKE_PREFIX_PATH=prefix,
               XDG_RUNTIME_DIR=os.path.join(tmp, "run"), LC_ALL="C.UTF-8")
    if pylib:
        env["PYTHONPATH"] = os.path.dirname(os.path.dirname(pylib))
    for k in ("SHMRPC_CONTROL", "SHMRPC_INI", "MAKEFLAGS"):
        env.pop(k, None)
    os.mkdir(env["XDG_RUNTIME_DIR"], 0o700)
    work = os.path.join(tmp, "work")
    os.mkdir(work)
    shell = Shell(work, env)
    failed, ran, here = 0, 0, work
    try:
        background = False
        for kind, name, body in blocks(text):
            if kind == "file":
                with open(os.path.join(here, name), "w") as f:
                    f.write(body)
                continue
            for command, shown in commands(body):
                ran += 1
                end = time.monotonic() + (20 if background else 0)
                while True:
                    status, got = shell.run(command)
                    ok = matches(shown, got) and (status == 0 or command.endswith("&"))
                    if ok or time.monotonic() >= end:
                        break
                    time.sleep(0.2)
                background = command.endswith("&")
                if command.startswith("mkdir ") and "&& cd " in command:
                    here = os.path.join(here, command.split("&& cd ")[1].strip())
                print(f"$ {command}\n" + "\n".join(got))
                if not ok:
                    failed += 1
                    print(f"FAIL: status {status}; the page shows:\n" + "\n".join(shown))
    finally:
        shell.kill(os.path.join(env["XDG_RUNTIME_DIR"], "shmrpc"))
        subprocess.run([os.path.join(prefix, "bin", "shmrpcctl"), "clean", "shm://parts"],
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)
    if ran < 10:
        print(f"FAIL: only {ran} commands found in {tutorial}")
        failed += 1
    print(f"tutorial_test: {ran} commands, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
