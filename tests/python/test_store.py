# SPDX-License-Identifier: MIT
"""shmrpc.Queue and shmrpc.Map from Python: typed by the signature stored in the segment,
read and written alike by shmrpcctl queue and map (C), untyped as bytes; timeouts and
errors as the client's. Every segment is this run's own and removed at the end."""
import json
import os
import subprocess
import threading

import pytest

import shmrpc
from conftest import wait_child

MSG = "raw()->struct Msg{u32 source;u64 seq;u32 hops;string note;} @msgpack"
ENTRY = "cache(string key)->struct Entry{i64 n;list<string> tags;bytes? blob;} @msgpack"
INTKEY = "idx(i32 key)->enum Color{red=0,green=5} @msgpack"


def ctl(*args, input=None):
    r = subprocess.run([os.environ["SHMRPCCTL"], *args], capture_output=True, text=True,
                       input=input, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture
def name(request):
    n = f"pyt_{request.node.name.replace('[', '_').replace(']', '')}_{os.getpid()}"
    yield n
    for unlink in (shmrpc.Queue.unlink, shmrpc.Map.unlink):
        try:
            unlink(n)
        except shmrpc.Error:
            pass


def test_typed_queue_both_ways_with_shmrpcctl(name):
    with shmrpc.Queue(name, create=True, type=MSG, capacity=8) as q:
        assert q.type == MSG and q.name == name
        q.push({"source": 1, "seq": 2**64 - 1, "hops": 0, "note": "ü"})
        out = json.loads(ctl("queue", "pop", "--timeout", "1000", name))
        assert out == {"source": 1, "seq": 2**64 - 1, "hops": 0, "note": "ü"}
        ctl("queue", "push", name, '{"source":7,"seq":8,"hops":9,"note":"from C"}')
        m = q.pop(timeout=1)
        assert type(m).__name__ == "Msg" and m.note == "from C" and m.seq == 8
        with pytest.raises(shmrpc.Timeout):
            q.pop(timeout=0)
        with pytest.raises(TypeError, match=r"value\.hops: expected an int \(u32\), got str"):
            q.push({"source": 1, "seq": 2, "hops": "x", "note": ""})
        with pytest.raises(OverflowError, match="value.source"):
            q.push({"source": -1, "seq": 2, "hops": 0, "note": ""})
        for i in range(8):
            q.push({"source": i, "seq": i, "hops": i, "note": ""}, timeout=0)
        with pytest.raises(shmrpc.Timeout):
            q.push({"source": 9, "seq": 9, "hops": 9, "note": ""}, timeout=0.05)
        assert [q.pop(timeout=1).seq for _ in range(8)] == list(range(8))
    with pytest.raises(shmrpc.Unavailable, match="closed"):
        q.pop(timeout=0)


def test_queue_of_another_type_refused(name):
    shmrpc.Queue(name, create=True, type=MSG).close()
    with pytest.raises(shmrpc.Error) as e:
        shmrpc.Queue(name, type="raw()->i64 @msgpack")
    assert e.value.status_name == "SHMRPC_EPROTO"
    assert shmrpc.Queue(name).type == MSG  # an open without a type takes it as it is


def test_untyped_queue_and_threads(name):
    q = shmrpc.Queue(name, create=True)
    assert q.type is None
    with pytest.raises(TypeError, match="expected bytes"):
        q.push("text")
    got = []
    t = threading.Thread(target=lambda: got.extend(q.pop(timeout=10) for _ in range(100)))
    t.start()  # pop waits without the GIL while this thread pushes
    for i in range(100):
        q.push(i.to_bytes(2, "little"))
    t.join(20)
    assert got == [i.to_bytes(2, "little") for i in range(100)]


def test_missing_queue_and_bad_names():
    with pytest.raises(shmrpc.Unavailable):
        shmrpc.Queue(f"pyt_missing_{os.getpid()}")
    with pytest.raises(shmrpc.Error):
        shmrpc.Queue("bad/name", create=True)
    with pytest.raises(ValueError):
        shmrpc.Queue("x", create=True, attach_timeout=-1)


def test_typed_map_both_ways_with_shmrpcctl(name):
    with shmrpc.Map(name, create=True, type=ENTRY) as m:
        assert m.type == ENTRY and len(m) == 0
        m["a"] = {"n": 1, "tags": ["x", "y"]}
        assert json.loads(ctl("map", "get", name, '"a"')) == {"n": 1, "tags": ["x", "y"], "blob": None}
        ctl("map", "put", name, '"b"', '{"n":-2,"tags":[],"blob":"AAE="}')
        b = m["b"]
        assert type(b).__name__ == "Entry" and b.n == -2 and b.blob == b"\x00\x01"
        assert len(m) == 2 and sorted(k for k, _ in m.items()) == ["a", "b"]
        assert m.get("zz") is None and m.get("zz", 5) == 5
        with pytest.raises(KeyError):
            m["zz"]
        del m["a"]
        with pytest.raises(KeyError):
            del m["a"]
        with pytest.raises(TypeError, match="key: expected a str, got int"):
            m[1] = {"n": 1, "tags": []}
        with pytest.raises(TypeError, match=r"value\.tags\[0\]: expected a str, got int"):
            m["c"] = {"n": 1, "tags": [1]}
        big = {"n": 3, "tags": ["t" * 1000] * 50, "blob": os.urandom(100000)}
        m["big"] = big
        assert m["big"] == big
    with pytest.raises(shmrpc.Unavailable):
        len(m)


def test_int_keyed_map_and_untyped_map(name):
    m = shmrpc.Map(name, create=True, type=INTKEY)
    m[-5] = "green"
    assert m[-5] == "green" and m.items() == [(-5, "green")]
    with pytest.raises(ValueError, match="value: enum Color has no value 'blue'"):
        m[1] = "blue"
    with pytest.raises(OverflowError, match="key"):
        m[2**40] = "red"
    m.close()
    u = shmrpc.Map(name + "_u", create=True)
    try:
        u[b"k"] = b"v"
        assert u[b"k"] == b"v" and u.items() == [(b"k", b"v")] and u.type is None
        with pytest.raises(TypeError):
            u["k"] = b"v"
    finally:
        u.close()
        shmrpc.Map.unlink(name + "_u")
    with pytest.raises(shmrpc.Unavailable):
        shmrpc.Map(f"pyt_missing_{os.getpid()}")


def in_child(fn):
    """Runs fn() in a forked child: its exit code, 0 when fn returned True."""
    import sys
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if fn() else 3
        except BaseException as e:  # noqa: BLE001
            print("child:", repr(e), file=sys.stderr)
            code = 2
        os._exit(code)
    return wait_child(pid)


def test_forked_child_uses_the_parents_map(name):
    """A child forked while a thread of the parent is inside a call on the shared Map (it
    holds the handle's lock) neither waits for that lock nor uses the handle the call was
    changing: it gets a handle of its own, on the same map."""
    with shmrpc.Map(name, create=True, type=ENTRY) as m:
        m["k"] = {"n": 1, "tags": [], "blob": None}
        assert in_child(lambda: m["k"].n == 1) == 0
        inside, leave = threading.Event(), threading.Event()

        def slow_struct(name_, fields):  # runs inside m.items(), the handle's lock held
            inside.set()
            leave.wait(30)
            return shmrpc._make_struct(name_, fields)

        shmrpc._shmrpc._set_struct_factory(slow_struct)
        try:
            t = threading.Thread(target=m.items)
            t.start()
            assert inside.wait(10)

            def child():
                shmrpc._shmrpc._set_struct_factory(shmrpc._make_struct)
                m["c"] = {"n": 2, "tags": ["kid"], "blob": b"x"}
                return m["k"].n == 1 and len(m) == 2

            code = in_child(child)
        finally:
            shmrpc._shmrpc._set_struct_factory(shmrpc._make_struct)
            leave.set()
        t.join(10)
        assert code == 0
        assert m["c"].tags == ["kid"] and len(m) == 2  # the child wrote into the same map
    m.close()


def test_forked_child_uses_the_parents_queue(name):
    """A child pushes and pops through a Queue opened before the fork, while a thread of
    the parent waits in pop on the same handle: the parent's thread gets what the child
    pushed, and the child its own pops."""
    with shmrpc.Queue(name, create=True, type=MSG, capacity=16) as q:
        got = []
        t = threading.Thread(target=lambda: got.append(q.pop(timeout=30)))
        t.start()

        def child():
            for i in range(3):
                q.push({"source": 1, "seq": i, "hops": 0, "note": "kid"}, timeout=5)
            return True

        assert in_child(child) == 0
        t.join(30)
        assert len(got) == 1 and got[0].note == "kid"
        q.push({"source": 2, "seq": 9, "hops": 0, "note": "parent"}, timeout=1)
        assert in_child(lambda: [q.pop(timeout=5).note for _ in range(3)] == ["kid", "kid", "parent"]) == 0
        with pytest.raises(shmrpc.Timeout):
            q.pop(timeout=0)


def test_close_while_another_thread_pops(name):
    """close() while a thread waits in pop on the same handle, with no timeout: the pop
    ends within a moment with Unavailable (it waited on for ever before: issue 33), the
    handle is closed for every later use, and nothing is unmapped under the waiting thread
    (it was once: a use-after-free that ASan saw)."""
    q = shmrpc.Queue(name, create=True, type=MSG, capacity=4)
    errors = []

    def wait():
        try:
            q.pop()
        except Exception as e:
            errors.append(e)

    t = threading.Thread(target=wait, daemon=True)  # a pop never woken cannot hold the exit
    t.start()
    threading.Event().wait(0.2)  # the pop is waiting by then
    assert t.is_alive()
    q.close()
    with pytest.raises(shmrpc.Unavailable):
        q.push({"source": 1, "seq": 1, "hops": 0, "note": "late"}, timeout=0)
    t.join(10)  # bounded: a pop that is not woken would hang here, not the run
    assert not t.is_alive(), "close() did not wake the pop"
    assert len(errors) == 1 and isinstance(errors[0], shmrpc.Unavailable), errors
    assert "closed while this waited" in str(errors[0])
    with pytest.raises(shmrpc.Unavailable):
        q.pop(timeout=0)
    q.close()  # again: nothing happens


def test_close_wakes_a_push_and_timeouts_stay_whole(name):
    """A push waiting for room on a full queue is woken by close() as a pop is; a pop's
    timeout, waited in slices, still ends at its time with the whole wait in its message."""
    q = shmrpc.Queue(name, capacity=2, create=True)
    q.push(b"1")
    q.push(b"2")
    with pytest.raises(shmrpc.Timeout, match="stayed full for 120 ms"):
        q.push(b"3", timeout=0.12)
    errors = []
    t = threading.Thread(
        target=lambda: errors.append(pytest.raises(shmrpc.Unavailable, q.push, b"3")), daemon=True
    )
    t.start()
    threading.Event().wait(0.2)
    assert t.is_alive()
    q.close()
    t.join(10)
    assert not t.is_alive(), "close() did not wake the push"
    assert len(errors) == 1


def test_sizes_out_of_range_refused(name):
    """capacity and max_message_size are the library's 32-bit sizes: a larger one is an
    OverflowError (it was cut to 32 bits without a word: 2**32 + 64 made a queue of 64), a
    negative one a ValueError, and nothing is created."""
    with pytest.raises(OverflowError, match="capacity 4294967360 is above 4294967295"):
        shmrpc.Queue(name, create=True, capacity=2**32 + 64)
    with pytest.raises(OverflowError):
        shmrpc.Queue(name, create=True, max_message_size=2**40)
    with pytest.raises(ValueError, match="capacity must be 0 or more"):
        shmrpc.Queue(name, create=True, capacity=-1)
    assert not os.path.exists(f"/dev/shm/shmrpc.queue.{name}")
    with shmrpc.Queue(name, create=True, capacity=64) as q:
        q.push(b"x")
        assert q.pop(timeout=0) == b"x"


def test_failed_typed_open_leaves_nothing(name):
    """A typed open whose type is refused creates nothing: before, the queue (or map) was
    created with that type first, and every later open of the right type was refused."""
    with pytest.raises(ValueError, match="does not parse"):
        shmrpc.Queue(name, create=True, type="not a type")
    assert not os.path.exists(f"/dev/shm/shmrpc.queue.{name}")
    with shmrpc.Queue(name, create=True, type=MSG) as q:
        assert q.type == MSG
    with pytest.raises(ValueError, match="has no key"):
        shmrpc.Map(name, create=True, type="raw()->i64 @msgpack")
    assert not os.path.exists(f"/dev/shm/shmrpc.map.{name}")
    with pytest.raises(ValueError, match="does not parse"):
        shmrpc.Map(name, create=True, type="cache(string key")
    assert not os.path.exists(f"/dev/shm/shmrpc.map.{name}")
    with shmrpc.Map(name, create=True, type=ENTRY) as m:
        m["k"] = {"n": 1, "tags": [], "blob": None}
        assert m["k"]["n"] == 1
