# SPDX-License-Identifier: MIT
"""Servers for the Python client's tests: real echo-server and every-server processes over
shm:// (a name of this run's own) and tcp:// on loopback, each waited for with a bound and
stopped (and its segments removed) however the test ends."""
import faulthandler
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import shmrpc

# Where segments live: /dev/shm, and this user's directory of names (docs/names.md).
SEGMENT_DIRS = ("/dev/shm", "/dev/shm/shmrpc-%d" % os.geteuid())

# The sanitizer build preloads the ASan runtime into python3 for the extension; the
# servers and shmrpcctl carry their own, and must not get it twice; a Python server
# (py_server.py) needs it again.
PRELOAD = os.environ.pop("LD_PRELOAD", None)

# clang 14's ASan runtime does not hold its allocator's lock across fork (LLVM 18 does): a
# child forked while another thread of the process is inside ASan's allocator waits for
# ever in its first malloc (seen with gdb, the child's stack in the runtime's malloc).
# Two kinds of thread do that here:
# - a thread that join() has returned for may still be exiting, handing its allocator cache
#   back under that lock: the fork example of docs/python.md hung so under ctest. In the
#   ASan build a join therefore also waits, at most 2 s, for the thread to be gone from
#   /proc/self/task;
# - pytest's faulthandler_timeout, whose watchdog is a thread made anew at each test and
#   left to exit at its end: test_a_forked_child_does_not_hold_its_parents_lock hung so in
#   CI, and a loop of forks beside it under stress-ng hangs a child in seconds. The hang
#   dump is SIGALRM's instead (below), which needs no thread, in both builds; ctest passes
#   -p no:faulthandler.
# glibc's malloc is safe across fork, so the gcc build joins and forks as users' programs do.
if PRELOAD:
    _join = threading.Thread.join

    def _join_until_gone(self, timeout=None):
        _join(self, timeout)
        if self.native_id is not None and not self.is_alive():
            task = "/proc/self/task/%d" % self.native_id
            deadline = time.monotonic() + 2
            while os.path.exists(task) and time.monotonic() < deadline:
                time.sleep(0.0005)

    threading.Thread.join = _join_until_gone

# A test still running after DUMP_AFTER seconds prints every thread's stack to stderr (the
# test goes on: ctest's timeout ends a hang), so that a hang says where it waits; a crash
# prints them too, as pytest's faulthandler plugin would.
DUMP_AFTER = 120
_dump_file = pytest.StashKey()


def pytest_configure(config):
    # stderr as it is now: the tests' own output is captured, and the dump must get out.
    f = config.stash[_dump_file] = os.fdopen(os.dup(2), "w")
    faulthandler.enable(file=f, all_threads=True)
    faulthandler.register(signal.SIGALRM, file=f, all_threads=True)


def pytest_unconfigure(config):
    faulthandler.unregister(signal.SIGALRM)
    faulthandler.disable()
    config.stash[_dump_file].close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    signal.alarm(DUMP_AFTER)
    try:
        yield
    finally:
        signal.alarm(0)


HERE = os.path.dirname(os.path.abspath(__file__))
ECHO_SVC = os.path.join(HERE, "../../examples/echo/echo.svc")
EVERY_SVC = os.path.join(HERE, "../dynamic/every.svc")
ANY_SVC = os.path.join(HERE, "../any/any.svc")
STREAM_SVC = os.path.join(HERE, "../stream/stream.svc")
GATHER_SVC = os.path.join(HERE, "../stream/gather.svc")


def typed(v):
    """v with each value's Python type beside it, so that 2 == 2.0 and 1 == True differ
    (test_any.py, test_pipeline.py)."""
    if isinstance(v, dict):
        return {typed(k): typed(x) for k, x in v.items()}
    if isinstance(v, list):
        return [typed(x) for x in v]
    return (type(v).__name__, v)


def python_env():
    """The environment of a python3 that imports this build's shmrpc."""
    env = dict(os.environ)
    if PRELOAD:
        env["LD_PRELOAD"] = PRELOAD
    return env


def py_server(kind, address, workers=2):
    """A Python server (py_server.py) of echo.svc, every.svc, any.svc, stream.svc or gather.svc
    at address, waited for."""
    svc = {"echo": ECHO_SVC, "every": EVERY_SVC, "any": ANY_SVC, "streamer": STREAM_SVC,
           "gather": GATHER_SVC}[kind]
    return Server(sys.executable, address, os.path.join(HERE, "py_server.py"), kind, svc,
                  str(workers), env=python_env())


# Put before a server's command: SIGTERM to it when the test process dies, so that a test
# process killed by a crash leaves no server behind (PR_SET_PDEATHSIG, set by util-linux's
# setpriv, which then execs the command). Not a preexec_fn: Python code run between fork and
# exec can wait for ever on a lock another thread of the test process held at the fork (a
# test's Popen hung there for 120 s once under ASan).
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "TERM", "--"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, program, address, *args, env=None):
        self.address = address
        self.proc = subprocess.Popen([*DIE_WITH_PARENT, program, *args, address],
                                     stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True, env=env)
        deadline = time.monotonic() + 20
        while True:
            try:
                shmrpc.connect(address, timeout=2).close()
                return
            except shmrpc.Error:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop(keep_stderr=True)
                    err = self.proc.stderr.read().decode(errors='replace')
                    self.proc.stderr.close()
                    raise RuntimeError(f"{program} did not serve {address}: {err}")
                time.sleep(0.02)

    def stop(self, keep_stderr=False):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGCONT)  # a test may have stopped it
            except ProcessLookupError:
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the workers too
                self.proc.wait(10)
        if not keep_stderr:
            self.proc.stderr.close()
        name = self.address[len("shm://"):] if self.address.startswith("shm://") else None
        if name:
            for d in SEGMENT_DIRS:
                for f in os.listdir(d) if os.path.isdir(d) else []:
                    if name in f:
                        try:
                            os.unlink(os.path.join(d, f))
                        except OSError:
                            pass


def segments_of(name):
    """The paths of the files in /dev/shm and the directory of names with name in theirs."""
    return [os.path.join(d, f) for d in SEGMENT_DIRS if os.path.isdir(d)
            for f in os.listdir(d) if name in f]


def wait_for(what, check, bound=30):
    """check()'s first true value, asked every 50 ms; AssertionError past bound seconds."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        r = check()
        if r:
            return r
        time.sleep(0.05)
    raise AssertionError(f"not within {bound} s: {what}")


def wait_child(pid, seconds=30):
    """The exit code of forked child pid; killed, and the test failed, when it does not end
    in time."""
    deadline = time.monotonic() + seconds
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child {pid} did not end within {seconds} s")
        time.sleep(0.01)


def count_until_timeout(stream):
    """How many items stream gave, each checked to be 0, 1, 2, ... in turn, before it raised
    shmrpc.Timeout (which it must)."""
    n = 0
    with pytest.raises(shmrpc.Timeout):
        for v in stream:
            assert v == n
            n += 1
    return n


def shm_name(tag):
    return f"shm://pyt_{tag}_{os.getpid()}"


@pytest.fixture(params=["shm", "tcp"])
def echo(request):
    addr = shm_name("echo") if request.param == "shm" else f"tcp://127.0.0.1:{free_port()}"
    s = Server(os.environ["ECHO_SERVER"], addr)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def every():
    s = Server(os.environ["EVERY_SERVER"], shm_name("every"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def py_every():
    """every.svc served from Python (py_server.py)."""
    s = py_server("every", shm_name("pyevery"))
    yield s
    s.stop()


@pytest.fixture
def shm_echo():
    s = Server(os.environ["ECHO_SERVER"], shm_name("echo1"))
    yield s
    s.stop()
