# SPDX-License-Identifier: MIT
"""Every type of the .svc language both ways through the Python client, against
every-server (tests/dynamic/every.svc, handlers that hand back what they are given), and
each kind of wrong value refused with the place, before anything is sent."""

import pytest

import shmrpc
import shmrpc._shmrpc

SCALARS = dict(b=True, i8v=-128, i16v=32767, i32v=-2**31, i64v=2**63 - 1, u8v=255, u16v=65535,
               u32v=2**32 - 1, u64v=2**64 - 1, f32v=1.5, f64v=-2.2500000000000004e300, s="héllo \"\\\n\x00 ☃",
               data=bytes(range(256)), c="green", sign="minus")


def node(depth):
    n = {"value": depth, "children": [], "next": None}
    if depth:
        n["children"] = [node(depth - 1), node(depth - 1)]
        n["next"] = node(depth - 1)
    return n


HOLDER = dict(maybe=SCALARS, oi=None, os="x", ob=b"\x01\x02", oc="blue", osg=None, ol=[1, -2, 3],
              on=node(2), names=["a", "", "ü"], grid=[[1, 2], [], [3]], sparse=[None, SCALARS],
              nested={"a": {"b": True}, "": {}}, e={},
              k=dict(s={"x": -1}, i8k={-128: True, 127: False}, i16k={-3: ["a"], 0: []},
                     i32k={2**31 - 1: "m"}, i64k={-2**63: 0.5}, u8k={255: True},
                     u16k={0: False}, u32k={2**32 - 1: 0.25}, u64k={2**64 - 1: [1.0, 2.5]},
                     ck={"red": node(1)}, sk={"zero": None, "plus": "p"}))


@pytest.fixture(scope="module", params=["every", "py_every"])
def c(request):
    """A client of every.svc served by every-server (C) and by a Python server."""
    server = request.getfixturevalue(request.param)
    with shmrpc.connect(server.address) as client:
        yield client


def same(a, b):
    """a (sent) equals b (received), floats exactly."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(b) >= set(a)
        for k in a:
            same(a[k], b[k])
        for k in set(b) - set(a):  # an optional field left out comes back as None
            assert b[k] is None
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    elif isinstance(a, float):
        # Exactly: the wire carries an f64 as its 8 bytes, and an f32 sent as one of its
        # values comes back as the shortest decimal that names it.
        assert isinstance(b, float) and a == b, (a, b)
    else:
        assert type(a) is type(b) and a == b, (a, b)


# A @json method's integers travel as int64 (docs/dynamic.md): a u64 above that is refused.
SCALARS_JSON = dict(SCALARS, u64v=2**63 - 1)
HOLDER_JSON = dict(HOLDER, maybe=SCALARS_JSON, sparse=[None, SCALARS_JSON])


@pytest.mark.parametrize("method,value", [("pass_scalars", SCALARS), ("pass_scalars_json", SCALARS_JSON)])
def test_scalars_both_ways(c, method, value):
    r = getattr(c, method)(value)
    same(value, r)
    assert isinstance(r, shmrpc.Struct) and type(r).__name__ == "Scalars"
    assert r.u64v == value["u64v"] and r["data"] == bytes(range(256)) and r.c == "green"
    assert "Scalars(b=True" in repr(r)
    same(value, getattr(c, method)(r))  # a struct that came back goes out again as it is
    with pytest.raises(AttributeError, match="struct Scalars has no field 'nope'"):
        r.nope


def test_u64_above_int64_in_json_method_refused_before_sending(c):
    with pytest.raises(ValueError, match="argument 'v'.u64v: 18446744073709551615 has no JSON form"):
        c.pass_scalars_json(SCALARS)


@pytest.mark.parametrize("method,value", [("pass_holder", HOLDER), ("pass_holder_json", HOLDER_JSON)])
def test_holder_both_ways(c, method, value):
    r = getattr(c, method)(value)
    same(value, r)
    assert r.maybe.sign == "minus" and r.on.children[1].value == 1 and r.e == {}
    assert r.k.u64k == {2**64 - 1: [1.0, 2.5]} and r.k.ck["red"].next.value == 0


@pytest.mark.parametrize("method", ["pass_keys", "pass_keys_json"])
def test_map_keys_both_ways(c, method):
    same(HOLDER["k"], getattr(c, method)(HOLDER["k"]))


@pytest.mark.parametrize("method", ["pass_node", "pass_node_json"])
def test_recursive_struct(c, method):
    same(node(4), getattr(c, method)(node(4)))


def test_parameters_by_position_name_and_left_out(c):
    assert c.first(-5, 7, "red", 0.5, False, "f", "plus") == -5
    assert c.first(a=7, b=0, c="blue", d=1, e=True) == 7  # optional f and g left out
    assert c.first(1, 2, "red", 0.0, True, g=None, f=None) == 1
    assert c.fourth_json(1, 2, "red", 0.75, True) == 0.75
    assert c.pass_sign(None) is None and c.pass_sign("zero") == "zero" and c.pass_sign() is None
    assert c.pass_map({-1: ["x", "y"], 5: []}) == {-1: ["x", "y"], 5: []}
    assert c.nothing() is None and c.nothing_json() is None
    assert c.raw(b"\x00\xff" * 9) == b"\x00\xff" * 9
    assert c.raw(bytearray(b"ab")) == b"ab" and c.raw(memoryview(b"cd")) == b"cd"
    assert c.raw(b"") == b""
    assert c.call("first", 3, 0, "red", 0, True) == 3


def test_signatures_and_help(c):
    assert c.methods["first"].startswith("first(i8 a,u16 b,enum Color{")
    assert c.service == "Every"
    import inspect
    s = inspect.signature(c.first)
    assert list(s.parameters) == list("abcdefg")
    assert s.parameters["g"].default is None and s.parameters["a"].default is s.empty
    assert c.first.__doc__ == c.methods["first"]
    # A method is a C callable made once per client (vectorcall: no Python frame, tuple or
    # dict per call), and still a routine to inspect, with its name.
    assert c.first is c.first and type(c.first) is shmrpc._shmrpc.Method
    assert inspect.isroutine(c.first) and c.first.__name__ == "first"
    assert c.first(a=1, b=0, c="red", d=0.5, e=True) == 1
    import pydoc
    text = pydoc.render_doc(c.pass_sign, renderer=pydoc.plaintext)
    assert "pass_sign(s=None)" in text and "->enum Sign?" in text.replace("{minus=-1,zero=0,plus=1}", "")


BAD = [
    # (method, args, kwargs, exception, text in its message)
    ("first", ("1", 0, "red", 0.0, True), {}, TypeError, "argument 'a': expected an int (i8), got str"),
    ("first", (True, 0, "red", 0.0, True), {}, TypeError, "argument 'a': expected an int (i8), got bool"),
    ("first", (128, 0, "red", 0.0, True), {}, OverflowError, "argument 'a': 128 is out of the range of i8"),
    ("first", (-129, 0, "red", 0.0, True), {}, OverflowError, "of i8"),
    ("first", (0, -1, "red", 0.0, True), {}, OverflowError, "argument 'b': -1 is out of the range of u16"),
    ("first", (0, 65536, "red", 0.0, True), {}, OverflowError, "u16"),
    ("first", (0, 0, "purple", 0.0, True), {}, ValueError, "argument 'c': enum Color has no value 'purple'"),
    ("first", (0, 0, 5, 0.0, True), {}, TypeError, "argument 'c': expected the name of a value of enum Color"),
    ("first", (0, 0, "red", "x", True), {}, TypeError, "argument 'd': expected a float (f32), got str"),
    ("first", (0, 0, "red", 1e39, True), {}, OverflowError, "argument 'd'"),
    ("first", (0, 0, "red", float("nan"), True), {}, ValueError, "no NaN"),
    ("first", (0, 0, "red", 0.0, 1), {}, TypeError, "argument 'e': expected a bool, got int"),
    ("first", (0, 0, "red", 0.0, True, b"x"), {}, TypeError, "argument 'f': expected a str, got bytes"),
    ("first", (0, 0, "red", 0.0, True, "\ud800"), {}, ValueError, "argument 'f': the str is not valid Unicode"),
    ("first", (0, 0, "red", 0.0), {}, TypeError, "first() is missing argument 'e'"),
    ("first", (0, 0, "red", 0.0, True, None, None, 1), {}, TypeError, "takes 7 arguments, 8 given"),
    ("first", (0, 0, "red", 0.0, True), {"a": 1}, TypeError, "got argument 'a' twice"),
    ("first", (0, 0, "red", 0.0, True), {"zz": 1}, TypeError, "has no parameter 'zz'"),
    ("pass_map", ({"1": []},), {}, TypeError, "argument 'm'['1']: expected an int (i16), got str"),
    ("pass_map", ({1: ["a", 2]},), {}, TypeError, "argument 'm'[1][1]: expected a str, got int"),
    ("pass_map", ({70000: []},), {}, OverflowError, "argument 'm'[70000]"),
    ("pass_map", ([],), {}, TypeError, "expected a dict (map), got list"),
    ("pass_node", ({"value": 1, "children": [{"value": 2, "children": "no"}]},), {}, TypeError,
     "argument 'v'.children[0].children: expected a list, got str"),
    ("pass_node", ({"value": 1},), {}, TypeError, "argument 'v'.children: missing (struct Node)"),
    ("pass_node", ({"value": 1, "children": [], "extra": 0},), {}, TypeError, "struct Node has no field 'extra'"),
    ("pass_node", ({"value": 1, "children": [], 5: 0},), {}, TypeError, "struct Node has no field 5"),
    ("pass_node", ([1, []],), {}, TypeError, "expected a dict or shmrpc.Struct (struct Node), got list"),
    ("pass_scalars", (dict(SCALARS, data="text"),), {}, TypeError, "argument 'v'.data: expected bytes, got str"),
    ("pass_scalars", (dict(SCALARS, u64v=2**64),), {}, OverflowError, "argument 'v'.u64v"),
    ("pass_scalars", (dict(SCALARS, i64v=-2**63 - 1),), {}, OverflowError, "argument 'v'.i64v"),
    ("pass_holder", (dict(HOLDER, sparse=[None, 5]),), {}, TypeError, "argument 'v'.sparse[1]: expected a dict"),
    ("pass_holder", (dict(HOLDER, k=dict(HOLDER["k"], ck={"mauve": node(0)})),), {}, ValueError,
     "argument 'v'.k.ck['mauve']: enum Color has no value 'mauve'"),
    ("raw", ("text",), {}, TypeError, "argument 'data': expected bytes, got str"),
    ("raw", (None,), {}, TypeError, "argument 'data': expected bytes, got NoneType"),
    ("raw", (), {}, TypeError, "raw() is missing argument 'data'"),
    ("nothing", (1,), {}, TypeError, "nothing() takes 0 arguments, 1 given"),
]


@pytest.mark.parametrize("method,args,kwargs,exc,text", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_wrong_values_name_the_place(c, method, args, kwargs, exc, text):
    with pytest.raises(exc) as e:
        getattr(c, method)(*args, **kwargs)
    assert text in str(e.value)
    assert c.first(1, 0, "red", 0.0, True) == 1  # the client goes on


def test_values_that_hold_themselves(c):
    n = {"value": 1, "children": []}
    n["children"].append(n)
    with pytest.raises(ValueError, match="nested more than 128 deep"):
        c.pass_node(n)
    loop = []
    loop.append(loop)
    with pytest.raises(TypeError):
        c.pass_map({1: loop})
    deep = node(0)
    for _ in range(300):
        deep = {"value": 0, "children": [deep]}
    with pytest.raises(ValueError, match="nested more than 128 deep"):
        c.pass_node(deep)


def test_unknown_method(c):
    with pytest.raises(AttributeError, match="Every has no method 'nope'"):
        c.nope
    with pytest.raises(AttributeError, match="no method 'nope'"):
        c.call("nope")


def test_fuzzed_arguments_never_crash(c):
    import random
    rnd = random.Random(16)
    pool = [None, True, 0, -1, 2**70, -2**70, 1.5, float("inf"), "", "red", "x" * 100, b"",
            b"\xff", [], [1], {}, {"value": 1}, {1: 2}, {None: 1}, object(), (), (1, 2),
            {"value": 1, "children": [], "next": None}, bytearray(3), "\ud800", 3j]

    def val(depth=0):
        if depth < 3 and rnd.random() < 0.3:
            return [val(depth + 1) for _ in range(rnd.randrange(3))]
        if depth < 3 and rnd.random() < 0.2:
            return {rnd.choice(["value", "children", "next", "b", 1, "red"]): val(depth + 1)
                    for _ in range(rnd.randrange(3))}
        return rnd.choice(pool)

    names = list(c.methods)
    for _ in range(3000):
        m = rnd.choice(names)
        args = [val() for _ in range(rnd.randrange(9))]
        try:
            c.call(m, *args)
        except (TypeError, ValueError, OverflowError, shmrpc.HandlerError):
            pass
    assert c.first(2, 0, "red", 0.0, True) == 2


CALLS = [("pass_scalars", (SCALARS,)), ("pass_holder", (HOLDER,)), ("pass_keys", (HOLDER["k"],)),
         ("pass_node", (node(3),)), ("first", (-5, 7, "blue", 0.1, False, "f", "plus")),
         ("first", (1, 2, "red", 3, True)), ("pass_sign", ("minus",)), ("pass_sign", ()),
         ("pass_map", ({-1: ["x"], 300: []},)), ("nothing", ())]


@pytest.mark.parametrize("method,args", CALLS, ids=[f"{m}-{i}" for i, (m, _) in enumerate(CALLS)])
def test_msgpack_requests_are_the_codecs_bytes(c, method, args):
    """The Python client writes a @msgpack request straight to msgpack; the bytes are the
    ones the dynamic codec writes from the JSON of the same values."""
    assert c._conn._request(method, args, None, False) == c._conn._request(method, args, None, True)


def test_f32_comes_back_as_its_shortest_decimal(c):
    assert c.fourth_json(0, 0, "red", 0.1, True) == 0.1
    r = c.pass_scalars(dict(SCALARS, f32v=0.1))
    assert r.f32v == 0.1


def test_values_that_change_under_the_walk(c):
    """Python code that runs while a value is written (an int subclass's __float__) and
    empties the list being written: refused, never a read of freed memory."""
    floats = []

    class Sly(int):
        def __float__(self):
            floats.clear()
            return 1.0

    floats.extend([Sly(1), Sly(2), Sly(3)])
    for method in ("pass_keys", "pass_keys_json"):
        floats[:] = [Sly(1), Sly(2), Sly(3)]
        with pytest.raises(RuntimeError, match=r"argument 'v'\.u64k\[1\]: the list changed"):
            getattr(c, method)(dict(HOLDER["k"], u64k={1: floats}))
    assert c.pass_keys(dict(HOLDER["k"], u64k={1: [Sly(1)]})).u64k == {1: [1.0]}


def test_non_str_keyword_names(c):
    with pytest.raises(TypeError, match="has no parameter 5"):
        c._conn._call("first", (), {5: 1})
