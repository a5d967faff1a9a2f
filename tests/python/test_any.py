# SPDX-License-Identifier: MIT
"""The .svc type any from Python (docs/python.md, "Types"): native values both ways through
a server of any.svc run by shmrpc.serve, through @msgpack and @json methods, a struct's
field, a typed queue and a typed map (and shmrpcctl reading and writing them), with the
errors that name the place inside a value. Every segment and server is this run's own."""
import base64
import json
import math
import os
import struct
import subprocess

import pytest

import shmrpc
from conftest import py_server, shm_name, typed

# Seed 004's values (PicklingTools' Val): dicts of lists of numbers and strings, built at
# run time; bytes; keys that JSON has no form for.
PACKET = {"sequence_number": 7, "samples": [1.5, 2, -3], "name": "x", "raw": b"\x00\x01",
          "nested": {"a": [[1], {}]}}
ODD_KEYS = {1: "one", -2**63: None, 2**64 - 1: [True, False], 2.5: {"x": b""}, None: 0,
            True: "bool", b"\xff": "bytes key", "": {}}
FORMS = [{"base64": "AA=="}, {"map": [[1, 2]]}, {"map": 1}, {"k\x00": 1}, "\x00nul in a value"]


def deep(levels, v=None):
    for _ in range(levels):
        v = [v]
    return v


@pytest.fixture(scope="module")
def dyn():
    s = py_server("any", shm_name("any"))
    yield s
    s.stop()


@pytest.fixture
def name(request):
    n = f"pyt_any_{request.node.name.replace('[', '_').replace(']', '')}_{os.getpid()}"
    yield n
    for unlink in (shmrpc.Queue.unlink, shmrpc.Map.unlink):
        try:
            unlink(n)
        except shmrpc.Error:
            pass


def test_native_values_both_ways(dyn):
    with shmrpc.connect(dyn.address) as c:
        for v in [PACKET, ODD_KEYS, *FORMS, None, True, 0, -1, 2**64 - 1, -2**63, 0.5, 2.0,
                  "grüß", b"", [], {}, deep(127)]:
            assert typed(c.echo(v)) == typed(v), v
        # tuples go as lists, any buffer as bytes
        assert c.echo((1, (2, bytearray(b"ab"), memoryview(b"cd")))) == [1, [2, b"ab", b"cd"]]
        # the handler is given native values too
        assert [c.kind(v) for v in (None, True, 1, 1.0, "s", b"b", [], {}, {1: 2})] == [
            "NoneType", "bool", "int", "float", "str", "bytes", "list", "dict", "dict"]
        assert c.many([1, "a"], {"k": [None]}) == [1, "a", {"k": [None]}]
        p = c.packet({"seq": 3, "body": PACKET, "extra": [b"\x01", {2: 3}]})
        assert p.seq == 3 and typed(p.body) == typed(PACKET) and p.extra == [b"\x01", {2: 3}]


def test_json_method_carries_plain_json(dyn):
    with shmrpc.connect(dyn.address) as c:
        plain = {"sequence_number": 7, "samples": [1.5, 2, -3], "name": "x", "n": None,
                 "nested": {"a": [[1], {}]}, **{"map": [[1, 2]]}}
        assert typed(c.echo_json(plain)) == typed(plain)
        for v in FORMS[:3]:  # one-entry dicts keyed "base64" or "map" stay dicts
            assert typed(c.echo_json(v)) == typed(v)
        with pytest.raises(ValueError, match=r"argument 'v'\[\"raw\"\]: bytes have no JSON "
                                               r"form in a @json method"):
            c.echo_json({"raw": b"\x00"})
        with pytest.raises(ValueError, match="a map key that is not a string has no JSON form"):
            c.echo_json({1: 2})
        with pytest.raises(ValueError, match="has no JSON form in a @json method"):
            c.echo_json([2**64 - 1])


def test_errors_name_the_place(dyn):
    with shmrpc.connect(dyn.address) as c:
        with pytest.raises(TypeError, match=r"argument 'v'\[\(1, 2\)\]: a key of a dict in an "
                                            r"any must be None, bool, int, float, str or bytes, "
                                            r"got tuple"):
            c.echo({(1, 2): 3})
        with pytest.raises(TypeError, match=r"argument 'v'\['k'\]\[1\]: expected a value an any "
                                            r"holds .*got set"):
            c.echo({"k": [1, {2}]})
        with pytest.raises(OverflowError, match=r"argument 'v'\[0\]: 18446744073709551616 is "
                                                r"out of the range of an any's integers"):
            c.echo([2**64])
        with pytest.raises(OverflowError, match="out of the range"):
            c.echo(-2**63 - 1)
        with pytest.raises(ValueError, match=r"argument 'v'\['f'\]: nan cannot be sent"):
            c.echo({"f": float("nan")})
        with pytest.raises(ValueError, match="nested more than 128 deep"):
            c.echo(deep(200))
        # 128 lists and maps are an any's most (the last one empty); a 129th, even empty, is
        # refused before it is sent, as the peer would refuse it
        assert c.echo(deep(127, [])) == deep(127, [])
        for extra in ([], {}, ()):
            with pytest.raises(ValueError, match=r"^argument 'v'(\[0\]){128}: nested more "
                                                 r"than 128 deep"):
                c.echo(deep(127, [extra]))
        loop = []
        loop.append(loop)
        with pytest.raises(ValueError, match="nested more than 128 deep"):
            c.echo(loop)
        with pytest.raises(ValueError, match="lone surrogate"):
            c.echo(["\ud800"])
        with pytest.raises(TypeError, match=r"argument 'p'\.body\['x'\]: expected a value"):
            c.packet({"seq": 1, "body": {"x": object()}, "extra": []})
        assert c.echo(1) == 1  # the connection and the worker live on


class Loud(int):
    """An int whose own repr raises: a message must not call it."""

    def __repr__(self):
        raise RuntimeError("Loud.__repr__ called")


def test_json_queue_names_the_place_once(name):
    """A @json queue's value goes through the codec, whose message names the place: said
    once, not 'value: value[...]'."""
    with shmrpc.Queue(name, create=True, type="values()->any @json") as q:
        with pytest.raises(ValueError, match=r'^value\["a"\]: bytes have no JSON form in a '
                                             r'@json method'):
            q.push({"a": b"x"})
        with pytest.raises(ValueError, match=r'^value\[1\]: 18446744073709551615 has no JSON '
                                             r'form in a @json method'):
            q.push([0, 2**64 - 1])
        q.push({"a": [1, "x"]})
        assert q.pop(timeout=1) == {"a": [1, "x"]}


def test_huge_ints_named(name):
    """An int too long for str() (4300 digits by default), or whose subclass's __repr__
    raises, is still refused with OverflowError naming the place, not with what str() or
    __repr__ raised; a typed i64 and a dict key the same."""
    with shmrpc.Queue(name, create=True, type="values()->any @msgpack") as q:
        with pytest.raises(OverflowError, match=r"^value\['k'\]\[1\]: an int of 16610 bits is "
                                                r"out of the range of an any's integers"):
            q.push({"k": [0, 10**5000]})
        with pytest.raises(OverflowError, match=r"^value\[0\]: -1180591620717411303424 is out "
                                                r"of the range of an any's integers"):
            q.push([Loud(-2**70)])
        with pytest.raises(OverflowError, match=r"^value\[an int of 16610 bits\]: an int of "
                                                r"16610 bits is out of the range"):
            q.push({10**5000: 1})
        with pytest.raises(ValueError, match=r"^value\[1\]: nan cannot be sent"):
            q.push([1, Nan()])
        q.push([Loud(5)])
        assert q.pop(timeout=1) == [5]
    shmrpc.Queue.unlink(name)
    with shmrpc.Queue(name, create=True, type="n()->i64 @msgpack") as q:
        with pytest.raises(OverflowError, match=r"^value: an int of 16610 bits is out of the "
                                                r"range of i64"):
            q.push(-10**5000)


class Nan(float):
    def __new__(cls):
        return super().__new__(cls, "nan")

    def __repr__(self):
        raise RuntimeError("Nan.__repr__ called")


def keyed(levels, v=0):
    """levels maps nested, each keyed by an int: a valid any, whose JSON form is three
    levels deep a map ({"map": [[1, ...]]})."""
    for _ in range(levels):
        v = {1: v}
    return v


def test_typed_queue_and_map(name):
    # An any as deep as it may be, whatever its JSON forms would take: values go to and
    # from msgpack as a call's do, not through the codec's JSON (where 43 int-keyed maps or
    # bytes under 128 lists were 'JSON nested more than 128 deep').
    deepest = [keyed(127), deep(127, b"\x00"), deep(127, keyed(1))]
    with shmrpc.Queue(name, create=True, type="values()->any @msgpack") as q:
        for v in [PACKET, ODD_KEYS, *FORMS, 2**64 - 1, 2.0, *deepest]:
            q.push(v)
            assert typed(q.pop(timeout=1)) == typed(v), v
        with pytest.raises(TypeError, match=r"value\[0\]: expected a value an any holds"):
            q.push([set()])
        with pytest.raises(ValueError, match=r"^value(\[1\]){128}: nested more than 128 deep"):
            q.push(keyed(129))
    shmrpc.Queue.unlink(name)
    with shmrpc.Map(name, create=True, type="store(string key)->any @msgpack") as m:
        m["p"] = PACKET
        m["o"] = ODD_KEYS
        m["d"] = deepest[0]
        assert typed(m["p"]) == typed(PACKET) and typed(m["o"]) == typed(ODD_KEYS)
        assert m["d"] == deepest[0]
        assert sorted(k for k, _ in m.items()) == ["d", "o", "p"]


def ctl(*args, input=None):
    r = subprocess.run([os.environ["SHMRPCCTL"], *args], capture_output=True, text=True,
                       input=input, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_queue_with_shmrpcctl(name):
    """shmrpcctl reads and writes an any queue in the codec's JSON: bytes and maps with keys
    that are no strings in their forms, and back again."""
    with shmrpc.Queue(name, create=True, type="values()->any @msgpack") as q:
        q.push(PACKET)
        out = ctl("queue", "pop", "--timeout", "1000", name)
        assert json.loads(out) == {**PACKET, "raw": {"base64": "AAE="}}
        q.push({1: b"\xff", "base64": 2})
        assert json.loads(ctl("queue", "pop", "--timeout", "1000", name)) == {
            "map": [[1, {"base64": "/w=="}], ["base64", 2]]}
        ctl("queue", "push", name, '{"map":[[1,{"base64":"AAE="}],[null,[1.0,2]]]}')
        assert typed(q.pop(timeout=1)) == typed({1: b"\x00\x01", None: [1.0, 2]})
        ctl("queue", "push", name, '{"map":[["base64","x"]]}')
        assert q.pop(timeout=1) == {"base64": "x"}
        # a C producer's NaN (the builder takes it; JSON has no form for it) pops as a float
        ctl("queue", "push", "--base64", name, base64.b64encode(
            b"\x92\xcb" + struct.pack(">d", math.nan) + b"\x01").decode())
        v = q.pop(timeout=1)
        assert math.isnan(v[0]) and v[1] == 1
