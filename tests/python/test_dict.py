# SPDX-License-Identifier: MIT
"""shmrpc.Dict as UltraDict's users use it (`from shmrpc import Dict as UltraDict`): its
README's examples with their output, across real processes (subprocesses, and
multiprocessing's fork and spawn), the lock counting exactly, a holder killed with SIGKILL,
errors that name the key, values too big, and every segment removed by the process that
created it. Queue(serializer=) too. Every Dict a test makes is removed when it ends."""
import contextlib
import gc
import json
import marshal
import multiprocessing
import os
import pickle
import queue
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import shmrpc
from shmrpc import Dict as UltraDict
from conftest import PRELOAD, SEGMENT_DIRS, python_env, wait_child

WAIT = 30  # seconds: the bound of every wait for a process


def segments(name):
    """The segments of the map called name (its header, generations and lock)."""
    found = []
    for d in SEGMENT_DIRS:
        try:
            found += [f for f in os.listdir(d) if f".{name}" in f]
        except FileNotFoundError:
            pass
    return found


@pytest.fixture
def names():
    """Names a test makes, removed with what they register however the test ends."""
    made = []
    yield made
    for n in made:
        UltraDict.unlink_by_name(n, ignore_errors=True)


@pytest.fixture
def fresh(names):
    """A Dict of this test's own, created here."""
    def make(*args, **kwargs):
        d = UltraDict(*args, **kwargs)
        names.append(d.name)
        return d
    return make


class Py:
    """A python3 running code, which imports this build's shmrpc; stopped at the end."""

    def __init__(self, code):
        self.proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=python_env())
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for out in self.proc.stdout:
            self.lines.put(out.rstrip("\n"))
        self.lines.put(None)

    def line(self):
        """The next line it prints, waited for at most WAIT seconds."""
        try:
            out = self.lines.get(timeout=WAIT)
        except queue.Empty:
            self.proc.kill()
            raise AssertionError(f"no line from the child in {WAIT} s") from None
        assert out is not None, f"the child ended: {self.proc.wait(WAIT)}, {self.proc.stderr.read()}"
        return out

    def send(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def finish(self):
        """Waits for its exit (status 0), and returns what it printed that line() did not."""
        self.proc.stdin.close()
        rc = self.proc.wait(WAIT)
        assert rc == 0, self.proc.stderr.read()
        self.reader.join(WAIT)
        rest = []
        while (out := self.lines.get_nowait()) is not None:
            rest.append(out + "\n")
        return "".join(rest)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT)


def run(code):
    p = Py(code)
    try:
        return p.finish()
    finally:
        p.stop()


@contextlib.contextmanager
def preload_for_spawn():
    """A spawned python3 needs the sanitizers' preload as the test's own had it."""
    if PRELOAD:
        os.environ["LD_PRELOAD"] = PRELOAD
    try:
        yield
    finally:
        os.environ.pop("LD_PRELOAD", None)


# --- UltraDict's README --------------------------------------------------------------------

def test_readme_simple(fresh):
    ultra = fresh({1: 1}, some_key="some_value")
    assert ultra == {1: 1, "some_key": "some_value"}
    assert eval(repr(ultra)) == {1: 1, "some_key": "some_value"}
    assert ultra.name.startswith("psm_")
    out = run(f"""
        from shmrpc import Dict as UltraDict
        other = UltraDict(name={ultra.name!r})
        print(repr(other))
        other[2] = 2
    """)
    assert eval(out) == {1: 1, "some_key": "some_value"}
    assert ultra[2] == 2


def test_readme_nested_and_its_cleanup(names):
    # The creator is a process of its own, so that its exit (auto_unlink) is what removes
    # the Dict, the nested one and the register. (A name of this run's own, to remove
    # what it made when the test fails before its exit.)
    name = f"pyt_dict_nested_{os.getpid()}"
    names.append(name)
    creator = Py(f"""
        import sys
        from shmrpc import Dict as UltraDict
        ultra = UltraDict(recurse=True, name={name!r})
        ultra['nested'] = {{ 'counter': 0 }}
        print(type(ultra['nested']))
        print(ultra.name, ultra['nested'].name, flush=True)
        sys.stdin.readline()
        print(ultra['nested']['counter'], flush=True)
    """)
    try:
        assert creator.line() == "<class 'shmrpc.dict.Dict'>"
        made, nested = creator.line().split()
        assert made == name
        assert segments(name) and segments(nested) and segments(f"{name}.register")
        run(f"""
            from shmrpc import Dict as UltraDict
            other = UltraDict(name={name!r})
            other['nested']['counter'] += 1
            assert other.recurse
        """)
        creator.send("")
        assert creator.line() == "1"
        creator.finish()
        assert segments(name) == [] and segments(nested) == []
        assert segments(f"{name}.register") == []
    finally:
        creator.stop()


def test_readme_performance_setup_and_advanced(fresh):
    ultra = fresh()
    for i in range(10_000):
        ultra[i] = i
    assert len(ultra) == 10000 and ultra[500] == 500
    orig = dict(ultra)
    assert len(orig) == 10000 and orig[500] == 500
    assert ultra.data[500] == 500
    adv = fresh({"init": "some initial data"}, name=f"pyt_dict_my-name_{os.getpid()}",
                buffer_size=100_000)
    adv[0] = " " * 100_000  # more than buffer_size: no stream here, so nothing to overflow
    assert adv[0] == " " * 100_000 and adv["init"] == "some initial data"
    adv.print_status()
    assert adv.dump() is None and adv.load() is None and adv.load(force=True) is None
    assert adv.close() == {"init": "some initial data", 0: " " * 100_000}


def stale_lock_worker(name, target, crash_at):
    # UltraDict's examples/recover_from_stale_lock.py: the process that finds the counter
    # at crash_at kills itself with SIGKILL while it holds the lock.
    d = UltraDict(name=name)
    while True:
        with d.lock(timeout=1, steal_after_timeout=True):
            if d["counter"] >= target:
                return
            d["counter"] += 1
            if d["counter"] == crash_at:
                os.kill(os.getpid(), signal.SIGKILL)


def test_recover_from_stale_lock(fresh):
    ultra = fresh()
    ultra["counter"] = 0
    ctx = multiprocessing.get_context("spawn")
    with preload_for_spawn():
        procs = [ctx.Process(target=stale_lock_worker, args=(ultra.name, 100, 10))
                 for _ in range(3)]
        for p in procs:
            p.start()
    try:
        for p in procs:
            p.join(WAIT * 2)
        codes = sorted(p.exitcode for p in procs)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(WAIT)
    assert codes == [-signal.SIGKILL, 0, 0]
    assert ultra["counter"] == 100
    assert ultra.status()["lock_owner_deaths"] == 1


def test_a_thread_waits_for_another_threads_lock(names):
    # A write from one thread while another thread of the process holds d.lock waits for
    # it (without the GIL, else the holder could never let go): run in a process of its
    # own, bounded, so that a deadlock fails the test instead of hanging it.
    name = f"pyt_dict_threads_{os.getpid()}"
    names.append(name)
    out = run(f"""
        import threading, time
        from shmrpc import Dict as UltraDict
        d = UltraDict(name={name!r})
        try:
            held = threading.Event()
            def hold():
                with d.lock:
                    held.set()
                    time.sleep(0.3)
                    d['x'] = 'holder'
            t = threading.Thread(target=hold)
            t.start()
            held.wait(10)
            t0 = time.monotonic()
            d['x'] = 'writer'  # waits for the holder
            waited = time.monotonic() - t0
            t.join(10)
            print(d['x'], waited >= 0.2)
        finally:
            d.unlink()
    """)
    assert out.split() == ["writer", "True"]


def test_nested_values_and_deeper(fresh):
    ultra = fresh(recurse=True)
    ultra["a"] = {"b": {"c": 1}, "l": [1, {"x": 2}]}
    assert isinstance(ultra["a"], UltraDict) and isinstance(ultra["a"]["b"], UltraDict)
    assert ultra["a"]["l"] == [1, {"x": 2}]  # dicts inside lists stay values
    ultra["a"]["b"]["c"] += 41
    assert ultra == {"a": {"b": {"c": 42}, "l": [1, {"x": 2}]}}
    # setdefault gives back what it stored: the nested Dict, so that changes to it stay.
    ultra.setdefault("users", {})["bob"] = 1
    ultra.setdefault("users", {})["ann"] = 2
    assert ultra["users"] == {"bob": 1, "ann": 2}
    with pytest.raises(ValueError, match="create is True, False or None, not 1"):
        UltraDict(name=ultra.name, create=1)  # 1 == True, but it did what None does
    # A plain Dict does not nest, but a Dict stored as a value is shared as itself.
    plain = fresh()
    plain["d"] = {"x": 1}
    assert type(plain["d"]) is dict
    plain["shared"] = ultra["a"]
    plain["shared"]["new"] = 1
    assert ultra["a"]["new"] == 1


def test_close_closes_when_a_value_does_not_load(fresh):
    """A Dict stored in another, then removed: reading it raises CannotAttachSharedMemory
    naming the key that holds it, and close() raises that too but closes the handle."""
    nested, holder = fresh(recurse=True), fresh()
    nested["n"] = {"x": 1}
    holder["shared"] = nested["n"]
    holder["plain"] = 1
    nested.unlink()
    out = run(f"""
        from shmrpc import Dict as UltraDict, Unavailable
        h = UltraDict(name={holder.name!r}, create=False)
        print(h["plain"])
        try:
            h["shared"]
        except UltraDict.Exceptions.CannotAttachSharedMemory as e:
            print("read:", "key 'shared'" in str(e))
        try:
            h.close()
        except UltraDict.Exceptions.CannotAttachSharedMemory:
            print("close raised")
        try:
            h["plain"]
        except Unavailable as e:
            print("then:", e)
    """)
    assert out == f"1\nread: True\nclose raised\nthen: shmrpc.Dict '{holder.name}' is closed\n"


def test_nested_dicts_replaced_are_closed_once_let_go_of(fresh):
    """Each write of a dict under recurse makes a nested Dict; the handles of those replaced
    are closed when nothing holds them, so that a process writing nested dicts in a loop
    does not run out of mappings (3 each; vm.max_map_count is 65,530 by default): 1,000
    made 3,000 before."""
    ultra = fresh(recurse=True)

    def mappings():
        gc.collect()
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)

    ultra["n"] = {"a": 0}
    before = mappings()
    for i in range(1, 1001):
        ultra["n"] = {"a": i}
    kept = ultra["n"]
    # The last 64 stay open (3 mappings each), to be read again without opening them.
    assert kept == {"a": 1000} and mappings() - before < 64 * 3 + 50
    assert ultra["n"] is kept  # one handle while it is held


def test_a_dict_holding_itself_prints_as_a_dict_does(fresh):
    """A Dict stored in itself, or in a Dict it holds, prints as {...} there as a dict does,
    in this process and in another, whose reads open new handles."""
    a, b = fresh(), fresh()
    a["me"] = a
    a["b"] = b
    b["a"] = a
    assert a["me"] is a
    assert repr(a) == "{'me': {...}, 'b': {'a': {...}}}" or \
        repr(a) == "{'b': {'a': {...}}, 'me': {...}}"
    out = run(f"""
        from shmrpc import Dict as UltraDict
        a = UltraDict(name={a.name!r}, create=False)
        print(sorted(a.keys()), repr(a["b"]))
    """)
    assert out == "['b', 'me'] {'a': {'me': {...}, 'b': {...}}}\n" or \
        out == "['b', 'me'] {'a': {'b': {...}, 'me': {...}}}\n"


# --- the lock: counting in two processes, fork and spawn ------------------------------------

def count_under_lock(d, n):
    # Both start counting together (else one may be done before the other starts).
    d.update_key("ready", lambda r: r + 1, 0)
    deadline = time.monotonic() + WAIT
    while d["ready"] < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    for _ in range(n):
        with d.lock:
            d["counter"] += 1


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_parallel_counter_is_exact(fresh, method):
    ultra = fresh()
    ultra["counter"] = 0
    n = 5000
    ctx = multiprocessing.get_context(method)
    with preload_for_spawn():
        procs = [ctx.Process(target=count_under_lock, args=(ultra, n)) for _ in range(2)]
        for p in procs:
            p.start()
    try:
        for p in procs:
            p.join(WAIT * 2)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(WAIT)
    assert ultra["counter"] == 2 * n
    # The children attached (fork: inherited, spawn: pickled by name): none removed it.
    assert segments(ultra.name)


def test_update_key_is_atomic_without_the_lock(fresh):
    ultra = fresh()
    code = f"""
        from shmrpc import Dict as UltraDict
        d = UltraDict(name={ultra.name!r})
        def inc(v):
            assert not d._lock_is_mine()  # fn runs with no lock held
            return v + 1
        for _ in range(3000):
            d.update_key('n', inc, 0)
    """
    procs = [Py(code) for _ in range(2)]
    try:
        for p in procs:
            p.finish()
    finally:
        for p in procs:
            p.stop()
    assert ultra["n"] == 6000
    assert ultra.update_key("n", lambda v: v * 2) == 12000
    with pytest.raises(KeyError):
        ultra.update_key("absent", lambda v: v)


# --- the lock: a holder killed, busy, timeouts ---------------------------------------------

def test_holder_killed_with_sigkill(fresh):
    ultra = fresh()
    ultra["counter"] = 0
    holder = Py(f"""
        import os, time
        from shmrpc import Dict as UltraDict
        d = UltraDict(name={ultra.name!r})
        d.lock.acquire()
        d['counter'] += 1
        print(os.getpid(), flush=True)
        time.sleep(60)
    """)
    try:
        pid = int(holder.line())
        with pytest.raises(UltraDict.Exceptions.CannotAcquireLock) as e:
            ultra.lock.acquire(block=False)
        assert e.value.blocking_pid == pid
        assert ultra.lock.get_remote_pid() == pid
        t0 = time.monotonic()
        with pytest.raises(UltraDict.Exceptions.CannotAcquireLockTimeout) as e:
            with ultra.lock(timeout=0.3):
                pass
        assert 0.25 <= time.monotonic() - t0 < 5 and e.value.blocking_pid == pid
        assert not ultra.lock.steal()  # a live holder is not taken from
        os.kill(pid, signal.SIGKILL)
        holder.proc.wait(WAIT)
        assert ultra.lock.steal()  # its holder is gone: the next acquire takes it over
        with ultra.lock(timeout=5, steal=True, steal_after_timeout=True):
            assert ultra.lock.owner_died  # and knows it
            ultra["counter"] += 1
        assert ultra["counter"] == 2
        with ultra.lock:
            assert not ultra.lock.owner_died
        assert ultra.lock.get_remote_pid() == 0
        ultra["after"] = 1  # writes go on
        assert ultra.status()["lock_owner_deaths"] == 1
    finally:
        holder.stop()


def test_steal_after_timeout_waits_for_a_live_holder(fresh):
    ultra = fresh()
    holder = Py(f"""
        import time
        from shmrpc import Dict as UltraDict
        d = UltraDict(name={ultra.name!r})
        with d.lock:
            print('held', flush=True)
            time.sleep(0.6)
            d['by'] = 'holder'
    """)
    try:
        assert holder.line() == "held"
        t0 = time.monotonic()
        with ultra.lock(timeout=0.1, steal_after_timeout=True):
            # Not stolen: the holder finished its write before this got the lock.
            assert ultra["by"] == "holder" and not ultra.lock.owner_died
        assert time.monotonic() - t0 >= 0.3
        holder.finish()
    finally:
        holder.stop()


def test_lock_is_reentrant_and_writes_inside(fresh):
    ultra = fresh()
    with ultra.lock:
        with ultra.lock:
            ultra["a"] = 1
        assert ultra.lock.get_remote_pid() == os.getpid()
        ultra["b"] = 2
    assert ultra.lock.get_remote_pid() == 0
    assert ultra.lock.acquire(block=False) is True
    ultra.lock.release()
    with pytest.raises(RuntimeError, match="does not hold"):
        ultra.lock.release()


def test_a_forked_child_does_not_hold_its_parents_lock(fresh):
    ultra = fresh()
    with ultra.lock:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                ultra.lock.acquire(block=False)
            except UltraDict.Exceptions.CannotAcquireLock as e:
                code = 0 if e.blocking_pid == os.getppid() else 2
            finally:
                os._exit(code)
        code = wait_child(pid)
    assert code == 0


def test_close_while_threads_wait_for_the_lock(names):
    """close() inside `with d.lock:` while two threads of the process wait for the lock (a
    write, an acquire): the waiters raise Unavailable, nothing is unmapped under them, and the
    lock is free for the other processes. In a child, which a fault would kill."""
    name = f"pyt_close_wait_{os.getpid()}"
    names.append(name)
    out = run(f"""
        import threading, time
        from shmrpc import Dict as UltraDict, Unavailable
        d = UltraDict(name={name!r})
        got = []
        def write():
            try:
                d["x"] = 1
                got.append("written")
            except Unavailable as e:
                got.append("write: closed" if "closed" in str(e) else str(e))
        def acquire():
            try:
                d.lock.acquire()
                got.append("acquired")
            except Unavailable as e:
                got.append("acquire: closed" if "closed" in str(e) else str(e))
        d.lock.acquire()
        threads = [threading.Thread(target=write), threading.Thread(target=acquire)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        d.close()
        for t in threads:
            t.join(10)
        print(sorted(got), any(t.is_alive() for t in threads))
        other = UltraDict(name={name!r}, create=False)
        with other.lock(timeout=2):
            other["y"] = 2
        print(sorted(other.keys()))
    """)
    assert out == "['acquire: closed', 'write: closed'] False\n['y']\n"


# --- keys, values and their errors ----------------------------------------------------------

def test_errors_name_the_key(fresh, monkeypatch):
    ultra = fresh()
    with pytest.raises(TypeError, match=r"'psm_\w+': the serialization of the value of key "
                       r"'f': cannot pickle '_thread.lock' object"):
        ultra["f"] = threading.Lock()
    assert "f" not in ultra

    class Picky:
        @staticmethod
        def dumps(v):
            if v == "bad":
                raise ValueError("will not write 'bad'")
            return json.dumps(v)
        loads = staticmethod(json.loads)

    picky = UltraDict(name=ultra.name, serializer=Picky)
    with pytest.raises(ValueError, match=r"value of key 'k': will not write 'bad'"):
        picky["k"] = "bad"
    ultra["p"] = b"pickled"

    class Unreadable:  # writes as pickle does, reads keys and not the value b"pickled"
        dumps = staticmethod(lambda v: pickle.dumps(v, 4))

        @staticmethod
        def loads(b):
            if pickle.loads(b) == b"pickled":
                raise ValueError("cannot read this")
            return pickle.loads(b)

    with pytest.raises(ValueError, match="stored value does not load: the value of key 'p': "
                       "cannot read this"):
        UltraDict(name=ultra.name, serializer=Unreadable)["p"]
    with pytest.raises(TypeError, match="unhashable"):
        ultra[[1]] = 1
    with pytest.raises(TypeError, match="frozenset cannot be a key"):
        ultra[(1, frozenset({2}))] = 1
    with pytest.raises(TypeError, match="dumps"):
        UltraDict(name=ultra.name, serializer=object())
    # Refused before a map is made: the random name it would have had is nowhere.
    monkeypatch.setattr(sys.modules["shmrpc.dict"].secrets, "token_hex",
                        lambda n: f"bad{os.getpid()}")
    with pytest.raises(TypeError, match="dumps"):
        UltraDict(serializer=object())
    assert segments(f"psm_bad{os.getpid()}") == []


def test_values_too_big_are_refused(fresh):
    small = fresh(full_dump_size=1 << 20)
    with pytest.raises(ValueError, match=r"value of key 'x' serializes to \d+ bytes, more than "
                       "the 1048576"):
        small["x"] = b" " * (2 << 20)
    small["y"] = b" " * (600 << 10)
    # Under the bound each, but together past it: the map's own bound, naming the key.
    with pytest.raises(shmrpc.Error, match="key 'z'.*max_bytes is 1048576") as e:
        small["z"] = b" " * (600 << 10)
    assert e.value.status_name == "SHMRPC_ETOOBIG"
    assert list(small) == ["y"] and len(small["y"]) == 600 << 10
    big = fresh()
    with pytest.raises(ValueError, match="key .* serializes to 70009 bytes, more than 65536"):
        big["k" * 70000] = 1
    with pytest.raises(ValueError, match="more than the 268435456 a value may have"):
        big["huge"] = b" " * ((1 << 28) + 1)
    big["fine"] = 1


def test_keys_serialize_alike(fresh):
    ultra = fresh()
    a = "a" * 10
    ultra[(a, a)] = 1  # one object twice: pickle would memoize it
    assert ultra[("a" * 10, "".join(["a"] * 10))] == 1
    out = run(f"""
        from shmrpc import Dict as UltraDict
        d = UltraDict(name={ultra.name!r})
        print(d[('a' * 10, 'a' * 10)], list(d))
    """)
    assert out.strip() == "1 [('aaaaaaaaaa', 'aaaaaaaaaa')]"
    # Keys are their serialized bytes: equal keys of other types are other keys.
    ultra[1] = "int"
    ultra[1.0] = "float"
    ultra[True] = "bool"
    assert (ultra[1], ultra[1.0], ultra[True]) == ("int", "float", "bool")


@pytest.mark.parametrize("ser", [pickle, marshal, json])
def test_serializers_across_processes(fresh, ser):
    ultra = fresh(serializer=ser)
    ultra["list"] = [1, "two", 3.0]
    ultra[7] = {"x": [None, True]}
    out = run(f"""
        import {ser.__name__}
        from shmrpc import Dict as UltraDict
        d = UltraDict(name={ultra.name!r}, serializer={ser.__name__})
        print(repr(d['list']), repr(d[7]), sorted(map(str, d)))
        d['from child'] = ('t',) if {ser.__name__ != 'json'} else ['t']
    """)
    assert out.strip() == "[1, 'two', 3.0] {'x': [None, True]} ['7', 'list']"
    assert ultra["from child"] in (("t",), ["t"])


def test_a_key_the_serializer_gives_back_otherwise_is_refused(fresh):
    """Under json a tuple comes back a list, which no dict can hold: stored, it made keys(),
    items(), repr, == and close() of the Dict fail in every process. Refused, naming it."""
    ultra = fresh(serializer=json)
    ultra["kept"] = 1
    for key in [(1, 2), ("a", (3,))]:
        with pytest.raises(TypeError, match=r"key \(1, 2\) comes back from the serializer as "
                           r"\[1, 2\], which is not the same key" if key == (1, 2) else "not the same"):
            ultra[key] = "v"
    assert ultra.keys() == {"kept"} and repr(ultra) == "{'kept': 1}"
    assert ultra.close() == {"kept": 1}


# --- the dict interface ---------------------------------------------------------------------

def test_dict_interface(fresh):
    d = fresh()
    ref = {}
    for obj in (d, ref):
        obj.update({"a": 1, "b": [2]}, c=3)
        obj["d"] = None
        obj.setdefault("e", 5)
        obj.setdefault("a", 99)
    assert d == ref and d.copy() == ref and len(d) == 5
    assert sorted(d) == sorted(ref) and sorted(d.keys()) == sorted(ref.keys())
    assert sorted(d.items()) == sorted(ref.items(), key=lambda kv: kv[0])
    assert sorted(map(repr, d.values())) == sorted(map(repr, ref.values()))
    assert "a" in d and "z" not in d and d.get("z") is None and d.get("z", 7) == 7
    assert d.pop("a") == 1 and d.pop("a", "gone") == "gone"
    with pytest.raises(KeyError):
        d.pop("a")
    with pytest.raises(KeyError):
        del d["a"]
    with pytest.raises(KeyError):
        d["a"]
    k, v = d.popitem()
    assert k not in d and ref[k] == v
    assert d != {} and d != ref and bool(d)
    d |= {"f": 6}
    assert (d | {"g": 7})["g"] == 7 and "g" not in d
    assert eval(repr(d)) == d.data and isinstance(d.data, dict)
    d.clear()
    assert len(d) == 0 and d == {} and not d
    with pytest.raises(KeyError, match="empty"):
        d.popitem()
    # UltraDict's no-ops, and status.
    assert d.dump() is None and d.load(force=True) is None and d.apply_update() is None
    s = d.status()
    assert s["name"] == d.name and s["count"] == 0 and s["serializer"] is pickle


def test_create_and_attach_rules(names):
    name = f"pyt_dict_rules_{os.getpid()}"
    names.append(name)
    with pytest.raises(UltraDict.Exceptions.CannotAttachSharedMemory):
        UltraDict(name=name, create=False)
    a = UltraDict(name=name, create=True)
    assert a.created and a.auto_unlink
    with pytest.raises(UltraDict.Exceptions.AlreadyExists):
        UltraDict(name=name, create=True)
    b = UltraDict(name=name)  # attaches
    assert not b.created and not b.auto_unlink
    b["x"] = 1
    assert a["x"] == 1
    data = b.close()
    assert data == {"x": 1}
    with pytest.raises(UltraDict.Exceptions.AlreadyClosed):
        b["x"]
    a.unlink()
    assert segments(name) == []
    with pytest.raises(UltraDict.Exceptions.CannotAttachSharedMemory) as e:
        UltraDict.unlink_by_name(name)
    assert e.value.status_name == "SHMRPC_ENOENT" and name in str(e.value)
    with pytest.raises(shmrpc.Error, match="SHMRPC_EINVAL|invalid") as e:
        UltraDict(name="a/b")
    assert e.value.status_name == "SHMRPC_EINVAL"
    UltraDict.unlink_by_name(name, ignore_errors=True)


@pytest.mark.parametrize("size", [0, 4096])
def test_a_map_half_made_by_a_dead_creator_is_made_anew(names, size):
    """The header of a map whose creator was killed making it: never sized (0 bytes), or
    sized and never initialised (its creator's pid, written first, 0 here). Dict(name=)
    makes the Dict anew, as UltraDict's create=None does when there is none; create=False
    still refuses it."""
    name = f"pyt_half_made_{size}_{os.getpid()}"
    names.append(name)
    fd = os.open(f"/dev/shm/shmrpc.map.{name}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
    with pytest.raises(shmrpc.Error):
        UltraDict(name=name, create=False)
    ultra = UltraDict(name=name)
    ultra["a"] = 1
    assert ultra.created and ultra.auto_unlink and ultra == {"a": 1}
    assert run(f"""
        from shmrpc import Dict as UltraDict
        d = UltraDict(name={name!r})
        print(d.created, d["a"])
    """) == "False 1\n"


def test_auto_unlink_only_in_the_creating_process(names):
    # The creator forks a child that exits through atexit; an attacher exits too; only the
    # creator's exit removes the Dict. auto_unlink=False leaves it.
    name = f"pyt_dict_auto_{os.getpid()}"
    kept = f"pyt_dict_kept_{os.getpid()}"
    names += [name, kept]
    out = run(f"""
        import os, sys
        from shmrpc import Dict as UltraDict
        d = UltraDict(name={name!r}, create=True)
        UltraDict(name={kept!r}, auto_unlink=False)['k'] = 1
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # runs atexit in the child
        os.waitpid(pid, 0)
        print(os.path.exists('/dev/shm/shmrpc.map.{name}'))
    """)
    assert out.strip() == "True"  # the forked child removed nothing
    assert segments(name) == [] and segments(kept)
    run(f"""
        from shmrpc import Dict as UltraDict
        d = UltraDict(name={kept!r})
        assert d['k'] == 1
    """)
    assert segments(kept)  # an attacher's exit removes nothing
    UltraDict.unlink_by_name(kept)
    assert segments(kept) == []


def test_a_writer_killed_in_nested_writes_leaves_no_map_unlisted(names):
    """A process writing nested dicts (recurse=True) killed at random moments, 15 times: every
    nested Dict it made is in the register, so unlink() of the Dict removes them all; what the
    survivor reads is whole."""
    name = f"pyt_killed_nested_{os.getpid()}"
    names.append(name)
    ultra = UltraDict(name=name, recurse=True)

    def psm_maps():
        found = set()
        for d in SEGMENT_DIRS:
            with contextlib.suppress(FileNotFoundError):
                found |= {f[len("shmrpc.map."):] for f in os.listdir(d)
                          if f.startswith("shmrpc.map.psm_")}
        return found

    before, killed = psm_maps(), set()
    for _ in range(15):
        p = Py(f"""
            import os
            from shmrpc import Dict as UltraDict
            d = UltraDict(name={name!r}, create=False)
            print(os.getpid(), flush=True)
            i = 0
            while True:
                d["n%d" % (i % 3)] = {{"a": {{"b": i}}, "c": i}}
                i += 1
        """)
        try:
            killed.add(int(p.line()))
            time.sleep(random.uniform(0.001, 0.03))
        finally:
            p.stop()
    for key in ultra.keys():
        assert sorted(ultra[key].keys()) == ["a", "c"] and list(ultra[key]["a"]) == ["b"]
    ultra.unlink()

    def ours(m):
        # Made by a killed writer; or never finished (its creator killed in the middle), as
        # another test's map being made would be within the retries.
        for _ in range(5):
            try:
                d = UltraDict(name=m, create=False, auto_unlink=False)
                return d.status()["creator"] in killed
            except shmrpc.Unavailable:
                return False  # removed meanwhile
            except shmrpc.Error:
                time.sleep(0.1)
        return True

    left = [m for m in psm_maps() - before if ours(m)]
    for m in left:
        UltraDict.unlink_by_name(m, ignore_errors=True)
    assert left == []


def test_an_attacher_with_recurse_registers_with_the_creator(names):
    # Created without recurse, attached with it: the nested Dict the attacher makes is
    # still removed with the Dict by its creator.
    name = f"pyt_dict_late_{os.getpid()}"
    names.append(name)
    out = run(f"""
        import sys
        from shmrpc import Dict as UltraDict
        d = UltraDict(name={name!r}, create=True)
        late = UltraDict(name={name!r}, recurse=True)
        late['n'] = {{'x': 1}}
        print(late['n'].name)
    """)
    nested = out.strip()
    assert nested.startswith("psm_")
    assert segments(name) == [] and segments(nested) == []
    assert segments(f"{name}.register") == []


def test_dict_pickles_as_its_name(fresh):
    ultra = fresh(recurse=True)
    ultra["n"] = {"x": 1}
    again = pickle.loads(pickle.dumps(ultra))
    assert again.name == ultra.name and not again.auto_unlink and again.recurse
    again["n"]["x"] = 2
    assert ultra["n"]["x"] == 2


# --- Queue(serializer=) ----------------------------------------------------------------------

@pytest.fixture
def qname():
    n = f"pyt_dictq_{os.getpid()}"
    yield n
    try:
        shmrpc.Queue.unlink(n)
    except shmrpc.Error:
        pass


@pytest.mark.parametrize("ser", [pickle, marshal, json])
def test_queue_takes_any_value_by_a_serializer(qname, ser):
    value = {"list": [1, 2.5, "x"], "nested": {"n": None}}
    with shmrpc.Queue(qname, create=True, serializer=ser) as q:
        child = Py(f"""
            import shmrpc, {ser.__name__}
            q = shmrpc.Queue({qname!r}, serializer={ser.__name__}, attach_timeout={WAIT})
            v = q.pop(timeout={WAIT})
            v['seen'] = True
            q.push(v, timeout={WAIT})
        """)
        try:
            q.push(value)
            child.finish()
        finally:
            child.stop()
        assert q.pop(timeout=WAIT) == {**value, "seen": True}


def test_queue_serializer_errors_and_bytes_kept(qname):
    with shmrpc.Queue(qname, create=True, serializer=pickle) as q:
        with pytest.raises(TypeError, match=f"shmrpc.Queue '{qname}': the serialization of "
                           "the value: cannot pickle"):
            q.push(threading.Lock())
        with shmrpc.Queue(qname) as raw:
            raw.push(b"not a pickle")
            with pytest.raises(pickle.UnpicklingError, match="a message does not load") as e:
                q.pop(timeout=1)
            assert e.value.raw_message == b"not a pickle"  # popped: not lost with the error
            q.push(b"bytes")  # pickled: the raw queue sees the pickle
            assert pickle.loads(raw.pop(timeout=1)) == b"bytes"
    with pytest.raises(ValueError, match="a type or a serializer"):
        shmrpc.Queue(qname, type="raw()->string @msgpack", serializer=pickle)
