# SPDX-License-Identifier: MIT
"""Serving from Python (shmrpc.serve, docs/python.md "Serving"): a Python server of
examples/echo/echo.svc (py_server.py) called by the C echo client and by the Python client,
a handler's exception as the call's error status with its message, handlers that do not
match refused before anything is served, SIGTERM finishing the call in flight, a handler
that reads its call's deadline and learns that its client gave up, interceptors on both
sides, and a Python service
under shmrpc-service that loses a worker, and then itself, to SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import shmrpc
from conftest import (ECHO_SVC, HERE, count_until_timeout, free_port, py_server, python_env,
                      segments_of, shm_name, wait_child, wait_for)


@pytest.fixture(params=["shm", "tcp"])
def py_echo(request):
    addr = shm_name("pyecho") if request.param == "shm" else f"tcp://127.0.0.1:{free_port()}"
    s = py_server("echo", addr)
    yield s
    s.stop()


def test_c_echo_client_calls_python_server(py_echo):
    out = subprocess.run([os.environ["ECHO_CLIENT"], py_echo.address], timeout=30,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "add(40, 2) = 42" in out.stdout
    assert 'centroid((0,0), (4,0), (2,3)) = (2, 1) "centroid"' in out.stdout
    assert 'echo_raw("hello, shmrpc") = "hello, shmrpc"' in out.stdout
    # the handler's ValueError: the status C handlers give a bad argument, and its message
    assert ("add(INT64_MAX, 1) -> invalid argument: ValueError: add: 9223372036854775807 + 1 "
            "overflows i64") in out.stdout


def test_python_client_calls_python_server(py_echo):
    with shmrpc.connect(py_echo.address) as c:
        assert c.service == "Echo"
        assert c.add(40, 2) == 42 and c.add(b=2, a=-44) == -42
        assert c.echo_raw(b"\x00\xff") == b"\x00\xff" and c.echo_json("grüß") == "grüß"
        p = c.centroid([{"x": 1.0, "y": 2.0}, {"x": 3.0, "y": 4.0, "label": "q"}])
        assert (p.x, p.y, p.label) == (2.0, 3.0, "centroid")
        with pytest.raises(shmrpc.HandlerError) as e:
            c.centroid([])
        assert e.value.status_name == "SHMRPC_EINVAL"
        assert e.value.message == "ValueError: centroid of no points"
        with pytest.raises(shmrpc.HandlerError) as e:
            c.echo_json("boom")
        assert e.value.status_name == "SHMRPC_EHANDLER"
        assert e.value.message == "RuntimeError: boom, as asked"
        assert c.add(1, 1) == 2  # the worker lives on


def test_method_table_is_the_generated_one(py_echo):
    """The C client checks the table at connect; compare it with echo-server's too."""
    c_server_addr = shm_name("cecho")
    from conftest import Server
    c_server = Server(os.environ["ECHO_SERVER"], c_server_addr)
    try:
        with shmrpc.connect(py_echo.address) as a, shmrpc.connect(c_server_addr) as b:
            assert a.methods == b.methods
    finally:
        c_server.stop()


class Wrong:
    def echo_raw(self, data):
        return data

    def echo_json(self, txt):
        return txt

    def centroid(self, points, extra):
        return points[0]

    centroid_too = None


def test_handlers_that_do_not_match_are_refused_before_serving(tmp_path):
    addr = shm_name("never")
    with pytest.raises(TypeError) as e:
        shmrpc.serve(ECHO_SVC, Wrong(), addr)
    msg = str(e.value)
    assert msg.startswith("handlers for Echo (")
    assert "no handler for add(a, b)" in msg
    assert "the handler of echo_json takes (txt); echo_json has (text)" in msg
    assert "the handler of centroid takes (points, extra); centroid has (points)" in msg
    with pytest.raises(TypeError, match=r"'adds' is no method of Echo; 'x' is no method"):
        shmrpc.serve(ECHO_SVC, {"echo_raw": bytes, "echo_json": str, "add": lambda a, b: a,
                                "centroid": lambda points: 0, "adds": len, "x": len}, addr)
    with pytest.raises(TypeError, match="the handler of add is not callable"):
        shmrpc.serve(ECHO_SVC, {"echo_raw": bytes, "echo_json": str, "add": 3,
                                "centroid": lambda points: 0}, addr)
    with pytest.raises(ValueError, match="nope.svc"):
        shmrpc.serve(os.path.join(HERE, "nope.svc"), {}, addr)
    assert not segments_of(addr[len("shm://"):])


@pytest.fixture(params=["shm", "tcp"])
def py_streamer(request, tmp_path, monkeypatch):
    """py_server.py's Streamer (tests/stream/stream.svc) with one worker; its notes in
    .notes."""
    notes = tmp_path / "notes"
    monkeypatch.setenv("PY_SERVER_NOTES", str(notes))
    addr = shm_name("pystream") if request.param == "shm" else f"tcp://127.0.0.1:{free_port()}"
    s = py_server("streamer", addr, workers=1)
    s.notes = notes
    yield s
    s.stop()


def test_a_python_handler_streams_what_it_yields(py_streamer):
    """The handler of a method whose result streams returns an iterable, a generator most
    often: its items go as they come, each encoded as a result is, in order, and the stream
    ends with it; an exception in it ends the stream after the items sent, as a handler's
    fails a call; an item that does not encode, or a result that is no iterable of items,
    fails it too (docs/python.md, "Serving")."""
    with shmrpc.connect(py_streamer.address, timeout=30) as c:
        got = list(c.ticks(1000, -1, 0))
        assert [t.at for t in got] == list(range(1000))
        assert got[2].note == "tick 2" and got[2].seen == [20, 21]
        assert list(c.ticks(0, -1, 0)) == []
        assert list(c.chunks(b"3 5")) == [b"aaaaa", b"bbbbb", b"ccccc"]
        big = list(c.chunks(b"2 1048576"))  # larger than shm://'s ring: in pieces
        assert [len(b) for b in big] == [1048576] * 2 and big[1] == b"b" * 1048576
        seen = []
        with pytest.raises(shmrpc.HandlerError, match="ticks: the handler failed: Failed: "
                                                      "failed after 2") as e:
            for t in c.ticks(5, 2, -6):
                seen.append(t.at)
        assert seen == [0, 1] and e.value.status_name == "SHMRPC_EHANDLER"
        with pytest.raises(shmrpc.Error, match="failed after 3") as e:  # the status it names
            list(c.ticks(5, 3, -13))
        assert e.value.status_name == "SHMRPC_EBUSY"
        seen = []
        with pytest.raises(shmrpc.HandlerError, match=r"TypeError: item\.at: expected an int"):
            for t in c.ticks(5, 1, 1):
                seen.append(t.at)
        assert seen == [0]
        with pytest.raises(shmrpc.HandlerError, match="ticks streams its result: its handler "
                                                      "returns an iterable of the items .*not str"):
            list(c.ticks(-1, -1, 0))
        with pytest.raises(shmrpc.HandlerError, match="'int' object is not iterable"):
            list(c.ticks(-2, -1, 0))
        assert c.twice(21) == 42
    # A C client: shmrpcctl call, a line of JSON an item.
    out = subprocess.run([os.environ["SHMRPCCTL"], "call", py_streamer.address, "ticks",
                          "[3, -1, 0]"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ['{"at":0,"note":"tick 0","seen":[]}',
                                       '{"at":1,"note":"tick 1","seen":[10]}',
                                       '{"at":2,"note":"tick 2","seen":[20,21]}']


@pytest.fixture
def py_gather(tmp_path, monkeypatch):
    """py_server.py's Gatherer (tests/stream/gather.svc) over shm:// with one worker; its
    notes in .notes."""
    notes = tmp_path / "notes"
    monkeypatch.setenv("PY_SERVER_NOTES", str(notes))
    s = py_server("gather", shm_name("pygather"), workers=1)
    s.notes = notes
    yield s
    s.stop()


def noted_in(notes, text):
    wait_for(repr(text), lambda: notes.exists() and text in notes.read_text().splitlines(), 15)


def test_a_python_client_stream(py_gather):
    """A method whose parameter streams: the client passes an iterable, whose items go in
    order, each encoded as the argument is, and gets the handler's answer; the handler
    iterates the client's items. An early answer drops the items left; a handler's failure,
    an item that does not fit the type, and an iterable that raises end the stream, the
    handler told, and the connection goes on (docs/python.md)."""
    with shmrpc.connect(py_gather.address, timeout=30) as c:
        t = c.sum({"n": i, "note": str(i) if i % 1000 == 0 else ""} for i in range(10000))
        assert (t.sum, t.count) == (sum(range(10000)), 10000)
        assert t.notes == [str(k * 1000) for k in range(10)]
        assert c.sum([]) == {"sum": 0, "count": 0, "notes": []}
        # An early answer: what the handler did not read is dropped.
        t = c.sum([{"n": 1, "note": ""}] * 9 + [{"n": 1, "note": "enough"}] +
                  [{"n": 1, "note": ""}] * 100000)
        assert (t.sum, t.count) == (10, 10)
        with pytest.raises(shmrpc.Error, match="told to fail at part 5") as e:
            c.sum({"n": i, "note": "fail" if i == 4 else ""} for i in range(1000000))
        assert e.value.status_name == "SHMRPC_EBUSY"
        # @raw parts, larger than the ring (in pieces), and a large answer while the client
        # still sends.
        parts = [bytes([k]) * 100000 for k in range(20)]
        assert c.concat(iter(parts)) == b"".join(parts)
        assert c.concat([b"a" * 4000] * 50 + [b"stop"] + [b"b" * 4000] * 1000) == b"a" * 200000
        assert c.drain(range(3)) is None
        noted_in(py_gather.notes, "drain: 3")

        def once_begun(last):
            """1, then last once the handler began (a stream closed sooner is withdrawn:
            its handler never runs). The notes are cleared before the call: the handler may
            begin before the iteration does."""
            yield 1
            noted_in(py_gather.notes, "drain: began")
            if isinstance(last, Exception):
                raise last
            yield last

        # Refused before it is sent: the stream ends, its handler told.
        py_gather.notes.unlink()
        with pytest.raises(TypeError, match=r"^item: expected an int"):
            c.drain(once_begun("three"))
        noted_in(py_gather.notes, "drain: Cancelled")
        py_gather.notes.unlink()
        with pytest.raises(KeyError, match="no more"):
            c.drain(once_begun(KeyError("no more")))
        noted_in(py_gather.notes, "drain: Cancelled")
        with pytest.raises(TypeError, match=r"^item: expected bytes, got str"):
            c.concat(["text"])
        assert c.drain([]) is None  # the connection goes on
        # The items' iterator is its call's: read after, it raises.
        assert c.concat([b"keep"]) == b"keep"
        assert c.drain([-1]) is None
        noted_in(py_gather.notes, "kept: the items of concat: its call is over")
        assert c.drain([-2]) is None  # nor from another thread, which would race its reads
        noted_in(py_gather.notes, "elsewhere: the items of drain are read by its handler's "
                                  "thread only")
        # An item above the client's maximum fails its send, and the call: nothing is lost
        # without a word.
        with pytest.raises(shmrpc.Error, match="larger than the client's maximum") as e:
            c.concat([b"small", bytes((64 << 20) + 1), b"after"])
        assert e.value.status_name == "SHMRPC_ETOOBIG"
        assert c.concat([b"x"]) == b"x"
    # The deadline: a handler that reads nothing holds the sends until it. The handler's own
    # wait ends at the same deadline, and its failure may reach the client first (a CI run
    # under load): then it says the handler's Timeout.
    with shmrpc.connect(py_gather.address, timeout=0.3) as c:
        with pytest.raises((shmrpc.Timeout, shmrpc.HandlerError)) as e:
            c.deaf(iter(int, 1))  # 0, 0, 0, ... for ever
        assert isinstance(e.value, shmrpc.Timeout) or \
            "the handler failed: Timeout: the call this handler serves: timed out" in str(e.value)
    noted_in(py_gather.notes, "deaf: Timeout")


def test_a_python_stream_both_ways_served(py_gather):
    """The handler of a method that streams both ways iterates the client's items and
    yields its own: a C client (gather-client) gets each value doubled, interleaved with its
    sends, then the end."""
    out = subprocess.run([os.environ["GATHER_CLIENT"], py_gather.address, "1000"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "1000 doubled\n"


@pytest.fixture(params=["shm", "tcp"])
def py_doubler(request, tmp_path, monkeypatch):
    """py_server.py's Gatherer (tests/stream/gather.svc) with two workers (a stream holds one
    over shm://), over shm:// and tcp://; its notes in .notes."""
    notes = tmp_path / "notes"
    monkeypatch.setenv("PY_SERVER_NOTES", str(notes))
    addr = shm_name("pyboth") if request.param == "shm" else f"tcp://127.0.0.1:{free_port()}"
    s = py_server("gather", addr, workers=2)
    s.notes = notes
    yield s
    s.stop()


def test_a_python_stream_both_ways(py_doubler):
    """A method that streams both ways takes an iterable and returns a Stream of the
    handler's items at once: the iterable's items are sent from a thread of their own while
    the caller iterates, so that neither side waits for the other (docs/python.md). A call
    beside it is refused at once, from the iterable too; what the iterable raises, or an item
    that does not fit, ends the stream, its handler told, and is raised by the iteration;
    close(), from any thread, ends it early; the connection goes on after each."""
    notes = py_doubler.notes
    with shmrpc.connect(py_doubler.address, timeout=60) as c:
        # Many more items than the transport holds either way, in order.
        n = 100000
        assert list(c.doubled(range(n))) == [2 * i for i in range(n)]
        # Lockstep: each item made only once the answer to the last one came.
        answers = []

        def lockstep():
            for i in range(200):
                yield i
                wait_for(f"the answer to {i}", lambda: len(answers) > i, 10)

        for x in c.doubled(lockstep()):
            answers.append(x)
        assert answers == [2 * i for i in range(200)]
        # The handler's return: the items after it unread, the stream's end.
        assert list(c.doubled([1, 2, -1] + [5] * 100000)) == [2, 4]
        # A call beside it, from this thread, another or the iterable: refused at once.
        beside = []

        def call_beside():
            try:
                c.drain([1])
            except shmrpc.HandlerError as e:
                beside.append(str(e))

        with c.doubled(iter(int, 1)) as s:  # 0, 0, 0, ... for ever
            assert next(s) == 0
            with pytest.raises(shmrpc.HandlerError, match="a stream is open on this client"):
                c.drain([1])
            t = threading.Thread(target=call_beside)
            t.start()
            t.join(10)
            assert not t.is_alive() and "a stream is open on this client" in beside[0]
            time.sleep(0.3)  # both sides' sends fill the transport, and wait for room
        noted_in(notes, "doubled: Cancelled")  # close() told the handler
        assert c.drain([1, 2]) is None

        def calls_its_connection():
            yield 1
            c.drain([1])

        with pytest.raises(shmrpc.HandlerError, match="a stream is open on this client"):
            list(c.doubled(calls_its_connection()))
        # The iterable's exception, and an item that does not fit, raised after what came.
        notes.unlink()

        got = []

        def then_raise():  # once the answer to 1 came: a cancel sooner may find no handler
            yield 1
            wait_for("the answer to 1", lambda: got, 10)
            raise KeyError("no more")

        with pytest.raises(KeyError, match="no more"):
            for x in c.doubled(then_raise()):
                got.append(x)
        assert got == [2]
        noted_in(notes, "doubled: Cancelled")
        with pytest.raises(TypeError, match=r"^item: expected an int"):
            list(c.doubled([1, "two", 3]))
        # Two threads taking its items at once: the second is refused.
        with c.stuck(iter(int, 1)) as s:
            t = threading.Thread(target=lambda: list(s))
            t.start()
            time.sleep(0.2)
            with pytest.raises(RuntimeError, match="another thread is taking this stream's"):
                next(s)
        t.join(10)
        assert not t.is_alive()
        # close() from another thread while next() waits: the end, as close() says.
        s = c.stuck(iter(int, 1))
        threading.Timer(0.3, s.close).start()
        t0 = time.monotonic()
        assert list(s) == []
        assert time.monotonic() - t0 < 10
        # A cancel from another thread: Cancelled.
        s = c.stuck(iter(int, 1))
        threading.Timer(0.3, c.cancel).start()
        with pytest.raises(shmrpc.Cancelled):
            next(s)
        assert list(s) == []  # over
        assert c.doubled([21]).__next__() == 42
    # The connection's close from another thread while next() waits, and while the sends
    # wait for room: each ends the stream.
    for method in ("stuck", "doubled"):
        c = shmrpc.connect(py_doubler.address, timeout=60)
        s = getattr(c, method)(iter(int, 1))
        closer = threading.Timer(0.3, c.close)
        closer.start()
        t0 = time.monotonic()
        assert all(x == 0 for x in s)
        assert time.monotonic() - t0 < 10
        closer.join(10)
        assert c.closed
    # The deadline ends it, the sends and the receives alike. The handler's own wait ends
    # at the same deadline, and its failure may reach the client first.
    with shmrpc.connect(py_doubler.address, timeout=0.5) as c:
        with pytest.raises((shmrpc.Timeout, shmrpc.HandlerError)) as e:
            list(c.stuck(iter(int, 1)))
        assert isinstance(e.value, shmrpc.Timeout) or "Timeout" in str(e.value)


def test_a_python_stream_both_ways_left_open_at_exit(py_doubler):
    """A program that ends with a stream both ways open, its sends waiting for room, exits
    at once: the interpreter's end closes the stream (its handler told)."""
    program = ("import shmrpc, sys\n"
               "c = shmrpc.connect(sys.argv[1], timeout=60)\n"
               "s = c.doubled(iter(int, 1))\n"
               "assert next(s) == 0\n"
               "import time; time.sleep(0.3)\n"
               "print('left open')\n")
    py_doubler.notes.unlink(missing_ok=True)
    out = subprocess.run([sys.executable, "-c", program, py_doubler.address], env=python_env(),
                         capture_output=True, text=True, timeout=30)
    assert (out.returncode, out.stdout) == (0, "left open\n"), out.stderr
    noted_in(py_doubler.notes, "doubled: Cancelled")


def test_a_python_stream_both_ways_across_a_fork(py_doubler):
    """A child forked while a stream both ways is open, its sends waiting for room: the
    child's connection is its own (the refusal of calls beside the stream stays the
    parent's), its copy of the stream raises Unavailable and closes at once, and the
    parent's stream goes on."""
    with shmrpc.connect(py_doubler.address, timeout=60) as c:
        s = c.doubled(iter(int, 1))  # 0, 0, ...: the sends soon wait for room
        assert next(s) == 0
        time.sleep(0.3)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                assert c.drain([1, 2]) is None  # a connection of its own, free
                with pytest.raises(shmrpc.Unavailable, match="the stream is the parent's"):
                    next(s)
                s.close()
                with c.doubled([21]) as mine:  # and its own stream both ways beside
                    assert list(mine) == [42]
                code = 0
            except BaseException as e:  # noqa: BLE001
                print("child:", repr(e), file=sys.stderr)
            os._exit(code)
        assert wait_child(pid) == 0
        assert all(next(s) == 0 for _ in range(1000))
        s.close()
        assert c.drain([1]) is None


def test_a_python_client_stream_over_tcp(py_gather):
    """Over tcp:// (wire revision 9) as over shm://: the items in order, more than the window
    holds, an early answer, a failure, @raw parts in pieces; and a C client streaming both
    ways."""
    s = py_server("gather", f"tcp://127.0.0.1:{free_port()}", workers=1)
    try:
        with shmrpc.connect(s.address, timeout=30) as c:
            t = c.sum({"n": i, "note": ""} for i in range(10000))
            assert (t.sum, t.count) == (sum(range(10000)), 10000)
            t = c.sum([{"n": 1, "note": "enough"}] + [{"n": 1, "note": ""}] * 100000)
            assert (t.sum, t.count) == (1, 1)
            with pytest.raises(shmrpc.Error, match="told to fail at part 5"):
                c.sum({"n": i, "note": "fail" if i == 4 else ""} for i in range(1000000))
            parts = [bytes([k]) * 100000 for k in range(20)]
            assert c.concat(iter(parts)) == b"".join(parts)
        out = subprocess.run([os.environ["GATHER_CLIENT"], s.address, "1000"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout == "1000 doubled\n"
    finally:
        s.stop()


def test_a_python_stream_ends_with_its_client(py_streamer):
    """A stream closed early, or past its deadline, closes its handler's generator (its
    finally runs) and shmrpc.cancelled() says why; a handler that sends nothing learns the
    deadline from shmrpc.cancelled(). The server goes on serving."""
    notes = py_streamer.notes

    def noted(text):
        wait_for(repr(text), lambda: notes.exists() and text in notes.read_text().splitlines(),
                 15)

    with shmrpc.connect(py_streamer.address, timeout=30) as c:
        f = c.forever(0)
        assert [next(f), next(f), next(f)] == [0, 1, 2]
        f.close()
        noted("forever: Cancelled")
        assert c.twice(2) == 4
    with shmrpc.connect(py_streamer.address, timeout=0.3) as c:
        assert count_until_timeout(c.forever(0)) > 0
        noted("forever: Timeout")
        # quiet returns no items once shmrpc.cancelled() says Timeout: its end (status 0) may
        # reach the client before the client's own deadline does, as under stress-ng.
        try:
            assert list(c.quiet()) == []
        except shmrpc.Timeout:
            pass
        noted("quiet: Timeout")
    with shmrpc.connect(py_streamer.address, timeout=30) as c:
        assert list(c.slow(3, 10)) == [0, 1, 2]


@pytest.mark.parametrize("transport", ["shm", "tcp"])
def test_a_python_stream_both_ways_item_above_the_maximum(transport, tmp_path, monkeypatch):
    """An item of the iterable above the server's maximum, in a stream both ways, fails its
    own send (nothing of it goes) and ends the stream with SHMRPC_ETOOBIG, which the
    iteration raises after the answers that came; the connection goes on."""
    monkeypatch.setenv("PY_SERVER_NOTES", str(tmp_path / "notes"))
    monkeypatch.setenv("PY_SERVER_MAX_MSG", "8")  # 2**40 is 9 bytes of msgpack, 2 is one
    addr = shm_name("pybig") if transport == "shm" else f"tcp://127.0.0.1:{free_port()}"
    s = py_server("gather", addr, workers=2)
    try:
        with shmrpc.connect(s.address, timeout=30) as c:
            got = []
            with pytest.raises(shmrpc.Error, match="above the server's maximum of 8") as e:
                for x in c.doubled([1, 2, 2**40, 3]):
                    got.append(x)
            assert e.value.status_name == "SHMRPC_ETOOBIG"
            assert got in ([], [2], [2, 4])  # what came before the cancel
            assert list(c.doubled([5, 6])) == [10, 12]
    finally:
        s.stop()


def test_a_python_stream_lets_the_gil_go_while_it_waits(tmp_path, monkeypatch):
    """A stream whose client reads nothing waits in its send for the window without the GIL:
    another client's call runs meanwhile (tcp://, where a worker runs calls on threads); an
    item above the server's maximum ends its stream with SHMRPC_ETOOBIG, as a C handler's."""
    monkeypatch.setenv("PY_SERVER_NOTES", str(tmp_path / "notes"))
    monkeypatch.setenv("PY_SERVER_MAX_MSG", "100000")
    s = py_server("streamer", f"tcp://127.0.0.1:{free_port()}", workers=1)
    try:
        with shmrpc.connect(s.address, timeout=30) as a, \
                shmrpc.connect(s.address, timeout=10) as b:
            with a.forever(0) as f:
                assert next(f) == 0
                time.sleep(0.3)  # its handler fills the window, and waits
                assert b.twice(3) == 6
            got = []
            with pytest.raises(shmrpc.Error, match="an item of 'chunks' is larger than the "
                                                   "server's maximum of 100000 bytes") as e:
                for chunk in b.chunks(b"2 100001"):
                    got.append(chunk)
            assert got == [] and e.value.status_name == "SHMRPC_ETOOBIG"
            assert list(b.chunks(b"2 99990")) == [b"a" * 99990, b"b" * 99990]
    finally:
        s.stop()


def test_a_python_result_above_the_maximum(monkeypatch):
    """A result above the server's maximum fails its call with SHMRPC_ETOOBIG, as a C
    handler's does, and the server serves on."""
    monkeypatch.setenv("PY_SERVER_MAX_MSG", "100000")
    s = py_server("echo", shm_name("big"), workers=1)
    try:
        with shmrpc.connect(s.address, timeout=30) as c:
            with pytest.raises(shmrpc.Error, match="the result of 'echo_json' is larger than "
                                                   "the server's maximum of 100000 bytes") as e:
                c.echo_json("big 100001")
            assert e.value.status_name == "SHMRPC_ETOOBIG"
            assert c.echo_json("big 99000") == "x" * 99000
    finally:
        s.stop()


def test_sigterm_finishes_the_call_in_flight():
    s = py_server("echo", shm_name("term"))
    try:
        got = {}

        def slow():
            with shmrpc.connect(s.address, timeout=20) as c:
                got["r"] = c.echo_json("slow")

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.3)  # the call is in its handler (which sleeps 1 s)
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(15) == 0
        t.join(15)
        assert got.get("r") == "slow"
        assert not segments_of(s.address[len("shm://"):])
    finally:
        s.stop()


def supervised_status(ini):
    """The service's entry in shmrpcctl status, or {} while the supervisor is not up."""
    import json
    out = subprocess.run([os.environ["SHMRPCCTL"], "--ini", ini, "status", "--json"],
                         capture_output=True, text=True, timeout=20)
    return json.loads(out.stdout)[0] if out.returncode == 0 else {}


def add_works(address):
    try:
        with shmrpc.connect(address, timeout=5) as c:
            return c.add(40, 2) == 42
    except shmrpc.Error:
        return False


def test_python_service_under_shmrpc_service(tmp_path):
    """exec = python3 ...: the supervisor sees its workers, scales them (SIGRTMIN, followed
    by the library inside the Python process), and a worker or the service killed with
    SIGKILL is replaced."""
    name = f"pyt_sup_{os.getpid()}"
    preload = f"env LD_PRELOAD={python_env()['LD_PRELOAD']} " if "LD_PRELOAD" in python_env() else ""
    ini = tmp_path / "service.ini"
    ini.write_text("[defaults]\nlog_dir = logs\nstop_timeout_s = 5\nrestart_backoff_ms = 100\n\n"
                   f"[py]\nexec = {preload}{sys.executable} {HERE}/py_server.py echo {ECHO_SVC} 2 "
                   f"shm://{name}\nshm_name = {name}\n")
    # (the supervisor carries its own ASan runtime, if any: the preload is for python3 only)
    sup = subprocess.Popen([os.environ["SHMRPC_SERVICE"], "--foreground", str(ini)],
                           stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           start_new_session=True)
    try:
        st = wait_for("py running with 2 workers", lambda: (
            lambda s: s if s.get("state") == "running" and len(s["worker_pids"]) == 2 else None)(
                supervised_status(str(ini))))
        assert wait_for("a call", lambda: add_works(f"shm://{name}"))
        pid, victim = st["pid"], st["worker_pids"][0]

        os.kill(victim, signal.SIGKILL)
        st = wait_for("the killed worker replaced", lambda: (
            lambda s: s if len(s.get("worker_pids", [])) == 2 and victim not in s["worker_pids"]
            else None)(
                supervised_status(str(ini))))
        assert st["pid"] == pid and st["restarts"] == 0
        assert wait_for("a call after the worker died", lambda: add_works(f"shm://{name}"))

        out = subprocess.run([os.environ["SHMRPCCTL"], "--ini", str(ini), "scale", "py", "3"],
                             capture_output=True, text=True, timeout=20)
        assert out.returncode == 0, out.stderr
        wait_for("3 workers", lambda: len(supervised_status(str(ini)).get("worker_pids", [])) == 3)

        os.kill(pid, signal.SIGKILL)
        st = wait_for("the service restarted", lambda: (
            lambda s: s if s.get("state") == "running" and s["pid"] not in (0, pid) else None)(
                supervised_status(str(ini))))
        assert st["restarts"] >= 1
        assert wait_for("a call after the restart", lambda: add_works(f"shm://{name}"))
    finally:
        sup.send_signal(signal.SIGTERM)
        try:
            sup.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(sup.pid, signal.SIGKILL)
            sup.wait(10)
        err = sup.stderr.read().decode(errors="replace")
        sup.stderr.close()
        log = tmp_path / "logs" / "py.log"
        err += log.read_text(errors="replace") if log.exists() else ""
        print(err)  # shown when the test fails
        for f in segments_of(name):
            os.unlink(f)
    assert sup.returncode == 0, err
    assert "py: stopped (it exited with status 0)" in err


def test_docs_serving_example(tmp_path):
    """docs/python.md's my_service.py, run as it is written (its echo.svc and address this
    run's own), called by the Python client and echo-client."""
    from test_docs import examples
    from conftest import Server
    (code,) = examples(serving=True)
    addr = shm_name("docserve")
    script = tmp_path / "my_service.py"
    script.write_text(code.replace('"echo.svc"', repr(ECHO_SVC))
                      .replace("shm://echo_serv", addr))
    s = Server(sys.executable, addr, str(script), env=python_env())  # (the address unread)
    try:
        with shmrpc.connect(addr) as c:
            assert c.add(40, 2) == 42 and c.echo_json("hello") == "world"
            with pytest.raises(shmrpc.HandlerError) as e:
                c.centroid([])
            assert e.value.status_name == "SHMRPC_EHANDLER"
            assert e.value.message == "ZeroDivisionError: division by zero"
        out = subprocess.run([os.environ["ECHO_CLIENT"], addr], timeout=30, capture_output=True,
                             text=True)
        assert out.returncode == 0, out.stdout + out.stderr
    finally:
        s.stop()
    assert s.proc.returncode == 0


FORKED = """
import os, sys, threading, shmrpc

seen = []
os.register_at_fork(after_in_child=lambda: seen.append(os.getpid()))
def spin():  # a Python thread busy with the GIL while the workers are forked
    while True:
        sum(range(1000))
threading.Thread(target=spin, daemon=True).start()
shmrpc.serve(sys.argv[1], {"echo_raw": lambda data: data,
                           "echo_json": lambda text: repr(seen == [os.getpid()]),
                           "add": lambda a, b: threading.active_count(),
                           "centroid": lambda points: points[0]}, sys.argv[2], workers=2)
"""


def test_workers_are_forked_as_os_fork_forks():
    """Python's at-fork callbacks run in each worker, and a Python thread running at the
    fork does not leave a worker without the GIL (its handler still answers)."""
    from conftest import Server
    s = Server(sys.executable, shm_name("forked"), "-c", FORKED, ECHO_SVC, env=python_env())
    try:
        for _ in range(4):
            with shmrpc.connect(s.address, timeout=10) as c:
                assert c.echo_json("x") == "True"
                assert c.add(0, 0) == 1  # the spinning thread stayed in the parent
    finally:
        s.stop()
    assert s.proc.returncode == 0


def test_handler_reads_its_deadline(py_echo):
    """shmrpc.deadline() in a handler: the client's timeout, counted from the call's start
    (docs/deadlines.md); None for a client that waits for ever."""
    with shmrpc.connect(py_echo.address, timeout=2.0) as c:
        left = float(c.echo_json("deadline"))
        assert 0 < left <= 2000
    with shmrpc.connect(py_echo.address, timeout=None) as c:
        assert c.echo_json("deadline") == "none"
    assert shmrpc.deadline() is None and shmrpc.cancelled() is None  # not in a handler


@pytest.mark.parametrize("transport", ["shm", "tcp"])
def test_cancel_from_another_thread(transport, tmp_path, monkeypatch):
    """Client.cancel() from another thread ends the call in flight with Cancelled long
    before its 30 s, the handler's shmrpc.cancelled() says Cancelled, and the client's next
    call runs."""
    notes = tmp_path / "notes"
    monkeypatch.setenv("PY_SERVER_NOTES", str(notes))
    address = (f"shm://pycancel{os.getpid()}" if transport == "shm"
               else f"tcp://127.0.0.1:{free_port()}")
    s = py_server("echo", address)
    try:
        with shmrpc.connect(s.address, timeout=30) as c:
            t = threading.Timer(0.3, c.cancel)
            t.start()
            t0 = time.monotonic()
            with pytest.raises(shmrpc.Cancelled) as e:
                c.echo_json("wait-cancel")
            t.join()
            assert time.monotonic() - t0 < 15
            assert e.value.may_have_run
            assert e.value.status_name == "SHMRPC_ECANCELLED"
            wait_for("the handler's note", lambda: notes.exists() and notes.read_text(), 15)
            assert notes.read_text() == "Cancelled\n"
            assert c.add(40, 2) == 42
    finally:
        s.stop()


@pytest.mark.parametrize("transport", ["shm", "tcp"])
def test_server_interceptors(transport, tmp_path, monkeypatch):
    """serve(interceptors=...): a before that raises refuses the call with the exception's
    status and message, and its handler does not run; an after's negative status replaces
    the answer; the hooks run in order around each call, and read in call.metadata the pairs
    its client sent ({} for none)."""
    notes = tmp_path / "notes"
    monkeypatch.setenv("PY_SERVER_NOTES", str(notes))
    monkeypatch.setenv("PY_SERVER_GATE", "1")
    address = (f"shm://pygate{os.getpid()}" if transport == "shm"
               else f"tcp://127.0.0.1:{free_port()}")
    s = py_server("echo", address, workers=1)
    try:
        with shmrpc.connect(s.address, timeout=30) as c:
            assert c.echo_json("through") == "through"
            c.metadata = {"user": "alice", "x-text": "grüß"}
            with pytest.raises(shmrpc.HandlerError) as e:
                c.centroid([{"x": 0, "y": 0}])
            assert e.value.status_name == "SHMRPC_EPERM"
            assert e.value.message == "PermissionError: no centroids today"
            c.set_metadata("x-text", None)
            c.traceparent = TP
            with pytest.raises(shmrpc.HandlerError) as e:
                c.add(40, 2)
            assert e.value.status_name == "SHMRPC_EBUSY"
        sent = f'{{"traceparent": "{TP}", "user": "alice"}}'
        assert notes.read_text().splitlines() == [
            "before Echo.echo_json {}", "after echo_json 0 {}",
            # refused by its own before: no after
            'before Echo.centroid {"user": "alice", "x-text": "gr\\u00fc\\u00df"}',
            f"before Echo.add {sent}", f"after add 0 {sent}"]
    finally:
        s.stop()


def test_client_interceptors(py_echo):
    """Client.intercept: befores in order, afters in reverse; a before that raises refuses
    the call, unsent, with that very exception; an after sees the status and may replace
    it with another or with an exception of its own. Each hook reads in call.metadata the
    pairs the call sends ({} for none), only while it runs."""
    seen = []
    sent = []  # (hook, call.metadata) of each hook of Outer and Inner
    kept = []  # the calls the befores were handed, kept past their hook

    class Outer:
        def before(self, call):
            seen.append(f"outer before {call.service}.{call.method}")
            sent.append(("outer before", call.metadata))
            kept.append(call)
            if call.method == "centroid":
                raise KeyError("no centroids from here")

        def after(self, call, status):
            seen.append(f"outer after {call.method} {status}")
            sent.append(("outer after", call.metadata))
            if call.method == "echo_json":
                return -1  # SHMRPC_EINVAL

    class Inner:
        def after(self, call, status):
            seen.append(f"inner after {call.method} {status}")
            sent.append(("inner after", call.metadata))
            if call.method == "echo_raw":
                raise LookupError("the answer is not wanted")

    with shmrpc.connect(py_echo.address, timeout=30) as c:
        c.intercept(Outer())
        c.intercept(Inner())
        with pytest.raises(TypeError, match="has neither"):
            c.intercept(object())
        assert c.add(40, 2) == 42
        c.metadata = {"user": "alice"}
        with pytest.raises(KeyError, match="no centroids from here"):
            c.centroid([{"x": 0, "y": 0}])
        c.traceparent = TP
        with pytest.raises(shmrpc.Error) as e:
            c.echo_json("x")
        assert e.value.status_name == "SHMRPC_EINVAL"
        c.metadata = {"x-text": "grüß"}
        with pytest.raises(LookupError, match="the answer is not wanted"):
            c.echo_raw(b"x")
        c.metadata = {}
        assert c.add(1, 2) == 3  # no exception left behind from the last call
    assert seen == [
        "outer before Echo.add", "inner after add 0", "outer after add 0",
        "outer before Echo.centroid",  # refused: the inner never ran, no after of its own
        "outer before Echo.echo_json", "inner after echo_json 0", "outer after echo_json 0",
        "outer before Echo.echo_raw", "inner after echo_raw 0",
        "outer after echo_raw -6",  # the inner's exception: SHMRPC_EHANDLER
        "outer before Echo.add", "inner after add 0", "outer after add 0"]
    alice, text = {"user": "alice"}, {"x-text": "grüß"}
    traced = {"user": "alice", "traceparent": TP}
    assert sent == [
        ("outer before", {}), ("inner after", {}), ("outer after", {}),
        ("outer before", alice),
        ("outer before", traced), ("inner after", traced), ("outer after", traced),
        ("outer before", text), ("inner after", text), ("outer after", text),
        ("outer before", {}), ("inner after", {}), ("outer after", {})]
    assert repr(kept[0]) == "<shmrpc call Echo.add>" and kept[0].method == "add"
    with pytest.raises(RuntimeError, match="only while the interceptor's hook runs"):
        kept[0].metadata


def test_handler_learns_its_client_gave_up(py_echo, tmp_path, monkeypatch):
    """shmrpc.cancelled() turns from None to a Timeout at the call's deadline, and a call the
    handler makes after it fails at once, unsent (its deadline is inherited)."""
    notes = tmp_path / "notes"
    monkeypatch.setenv("PY_SERVER_NOTES", str(notes))
    py_echo.stop()
    s = py_server("echo", py_echo.address)
    try:
        with shmrpc.connect(s.address, timeout=0.2) as c:
            # The client gives up at its deadline, or reads the answer given at the
            # server's, which is about as late (docs/deadlines.md): either way the handler
            # was told.
            try:
                c.echo_json("wait-cancel")
            except shmrpc.Timeout:
                pass
            wait_for("the handler's note", lambda: notes.exists() and notes.read_text(), 15)
            assert notes.read_text() == "Timeout\n"
            notes.unlink()
            with pytest.raises(shmrpc.Timeout):
                c.echo_json("relay " + s.address)
            wait_for("the handler's note", lambda: notes.exists() and notes.read_text(), 15)
            assert notes.read_text().startswith("Timeout: "), notes.read_text()
            assert "was not sent" in notes.read_text()
    finally:
        s.stop()


TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_metadata_round_trip(py_echo):
    """Client.metadata and set_metadata reach the handler's shmrpc.metadata(); the handler's
    shmrpc.traceparent() continues the client's trace with a span of its own; bad pairs are
    refused on the client with the library's message, and change nothing (docs/metadata.md)."""
    import json
    with shmrpc.connect(py_echo.address) as c:
        seen = json.loads(c.echo_json("meta"))
        assert set(seen) == {"own"} and seen["own"].startswith("00-")
        c.metadata = {"user": "alice", "x-text": "grüß"}
        assert c.metadata == {"user": "alice", "x-text": "grüß"}
        seen = json.loads(c.echo_json("meta"))
        assert seen["user"] == "alice" and seen["x-text"] == "grüß"
        c.traceparent = TP
        assert c.traceparent == TP
        seen = json.loads(c.echo_json("meta"))
        assert seen["traceparent"] == TP
        assert seen["own"][:36] == TP[:36] and seen["own"][36:52] != TP[36:52]
        with pytest.raises(ValueError, match="metadata key 'User' has a byte outside"):
            c.set_metadata("User", "x")
        with pytest.raises(ValueError, match="is longer than 1024 bytes"):
            c.metadata = {"a": "b", "big": "v" * 1025}
        assert c.metadata == {"user": "alice", "x-text": "grüß", "traceparent": TP}
        with pytest.raises(ValueError, match="traceparent 'nope'"):
            c.traceparent = "nope"
        c.set_metadata("user", None)
        c.traceparent = None
        seen = json.loads(c.echo_json("meta"))
        assert seen.keys() == {"own", "x-text"}
    assert shmrpc.metadata() == {} and shmrpc.traceparent() is None  # not in a handler


def test_trace_through_two_hops(py_echo):
    """client -> A -> B, Python handlers: B's parent is A's span, on the client's trace."""
    import json
    kind = "shm" if py_echo.address.startswith("shm://") else "tcp"
    addr_b = shm_name("pyecho_b") if kind == "shm" else f"tcp://127.0.0.1:{free_port()}"
    b = py_server("echo", addr_b)
    try:
        with shmrpc.connect(py_echo.address) as c:
            c.traceparent = TP
            c.set_metadata("user", "alice")
            seen = json.loads(c.echo_json("hop " + addr_b))
        a_own, inner = seen["own"], seen["b"]
        assert a_own[:36] == TP[:36]
        assert inner["traceparent"] == a_own  # B's parent: A's span
        assert inner["own"][:36] == TP[:36] and inner["own"][36:52] != a_own[36:52]
        assert "user" not in inner  # a handler's calls carry the trace on, not other pairs
        assert seen["sent"] == {"traceparent": a_own}  # what A's client interceptor saw
    finally:
        b.stop()


WORDS_SVC = """\
service Words {
    port 5999;
    name "words";
    struct Entry { string keys; list<i64> items; i64 get; string label; }
    Entry echo(Entry e);
    @json Entry echo_json(Entry e);
}
"""

WORDS_SERVER = """\
import sys
import shmrpc


def echo(e):
    # The handler's argument is a struct too: its fields win over the dict's methods.
    assert (e.keys, e.items, e.get) == ("k", [1, 2], 3), repr(e)
    return e


shmrpc.serve(sys.argv[1], {"echo": echo, "echo_json": echo}, sys.argv[2])
"""


def test_struct_fields_win_over_dict_methods(tmp_path):
    """A struct field named keys, items or get reads as the field (issue 38: it read as the
    dict's method), in a result and in a handler's argument; the dict's methods stay
    dict.keys(p), and a struct still is a dict."""
    from conftest import Server
    (tmp_path / "words.svc").write_text(WORDS_SVC)
    (tmp_path / "words_server.py").write_text(WORDS_SERVER)
    addr = shm_name("words")
    s = Server(sys.executable, addr, str(tmp_path / "words_server.py"),
               str(tmp_path / "words.svc"), env=python_env())
    try:
        with shmrpc.connect(addr, timeout=5) as c:
            for method in (c.echo, c.echo_json):
                p = method({"keys": "k", "items": [1, 2], "get": 3, "label": "x"})
                assert (p.keys, p.items, p.get, p.label) == ("k", [1, 2], 3, "x")
                assert p["keys"] == "k" and isinstance(p, dict)
                assert sorted(dict.keys(p)) == ["get", "items", "keys", "label"]
                assert dict(p) == {"keys": "k", "items": [1, 2], "get": 3, "label": "x"}
                assert repr(p) == "Entry(keys='k', items=[1, 2], get=3, label='x')"
                assert p.copy() == dict(p)  # a dict's method that no field hides
                assert json.loads(json.dumps(dict(p))) == dict(p)  # as docs/python.md says
                with pytest.raises(AttributeError, match="struct Entry has no field 'nope'"):
                    p.nope
                assert not hasattr(p, "")  # AttributeError, not IndexError
                assert method(p) == p  # passed back as it is
    finally:
        s.stop()
