# SPDX-License-Identifier: MIT
"""A PicklingTools-shaped pipeline (seed 004: Vals, dicts of lists of numbers and strings,
through shared-memory queues between C++ and Python) of the .svc type any: a C producer
(any-node, values built with the builder) into a typed queue, Python reading native values
and passing them on, a C consumer reading them through the view; and Python producing for
C. Real processes, each bounded; the queues are this run's own and removed however the
test ends."""
import os
import subprocess

import pytest

import shmrpc
from conftest import SEGMENT_DIRS, typed

VALUES = "values()->any @msgpack"  # any.svc's queue<any> values;
COUNT = 50


def seed_value(i):
    """What any-node produce builds for i."""
    return {"sequence_number": i, "samples": [1.5, 2, -3], "name": "x", "raw": b"\x00\x01",
            "nested": {"a": [[1], {}]}}


def render(v):
    """A value as any-node consume prints it (docs in tests/any/any_node.c)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return format(v, ".17g")
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, bytes):
        return f"b'{v.hex()}'"
    if isinstance(v, list):
        return "[" + ",".join(render(x) for x in v) + "]"
    return "{" + ",".join(f"{render(k)}:{render(x)}" for k, x in v.items()) + "}"


@pytest.fixture
def queues(request):
    names = [f"pyt_pipe{i}_{request.node.name}_{os.getpid()}" for i in range(2)]
    opened = [shmrpc.Queue(n, create=True, type=VALUES, capacity=8) for n in names]
    procs = []
    yield opened, procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
    for q, n in zip(opened, names):
        q.close()
        shmrpc.Queue.unlink(n)
    left = [f for d in SEGMENT_DIRS if os.path.isdir(d) for f in os.listdir(d)
            if any(n in f for n in names)]
    assert left == [], left


def node(procs, *args):
    p = subprocess.Popen([os.environ["ANY_NODE"], *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    procs.append(p)
    return p


def finish(p):
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return out


def test_c_producer_python_consumer(queues):
    (q, _), procs = queues
    producer = node(procs, "produce", q.name, str(COUNT))
    # capacity 8: the producer waits on the consumer, so both run at once
    for i in range(COUNT):
        assert typed(q.pop(timeout=10)) == typed(seed_value(i))
    finish(producer)


def test_python_producer_c_consumer(queues):
    (q, _), procs = queues
    consumer = node(procs, "consume", q.name, str(COUNT))
    sent = []
    for i in range(COUNT):
        v = seed_value(i)
        v.update({"name": f"py{i}", "raw": bytes([i, 255]), 7: None, b"k": 2.5, -1: [True],
                  "big": 2**64 - 1, "neg": -2**63, "f": i / 3})
        q.push(v, timeout=10)
        sent.append(v)
    lines = finish(consumer).splitlines()
    assert lines == [render(v) for v in sent]


def test_c_to_python_to_c(queues):
    """C -> Python (which adds a hop and a key C never wrote) -> C."""
    (q1, q2), procs = queues
    producer = node(procs, "produce", q1.name, str(COUNT))
    consumer = node(procs, "consume", q2.name, str(COUNT))
    for _ in range(COUNT):
        v = q1.pop(timeout=10)
        v["hops"] = v.get("hops", 0) + 1
        v["nested"][("a", 1)[1]] = {"from": "python"}
        q2.push(v, timeout=10)
    finish(producer)
    lines = finish(consumer).splitlines()
    want = []
    for i in range(COUNT):
        v = seed_value(i)
        v["hops"] = 1
        v["nested"][1] = {"from": "python"}
        want.append(render(v))
    assert lines == want


def test_c_consumer_refuses_a_queue_of_another_type():
    name = f"pyt_pipe_other_{os.getpid()}"
    with shmrpc.Queue(name, create=True, type="raw()->string @msgpack"):
        try:
            r = subprocess.run([os.environ["ANY_NODE"], "consume", name, "1"], capture_output=True,
                               text=True, timeout=30)
        finally:
            shmrpc.Queue.unlink(name)
    assert r.returncode == 1
    assert f"queue '{name}' carries raw()->string @msgpack, not values()->any @msgpack" in r.stderr
