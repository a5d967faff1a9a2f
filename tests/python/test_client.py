# SPDX-License-Identifier: MIT
"""The Python client against the C echo server over shm:// and tcp:// on loopback: calls,
the client options, every error as its exception, threads sharing a client (the GIL let
go while a call waits), a forked child, and closing."""
import os
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

import shmrpc
from conftest import count_until_timeout, wait_child


def test_calls(echo):
    with shmrpc.connect(echo.address) as c:
        assert c.add(40, 2) == 42 and c.add(a=-40, b=2) == -38 and c.add(1, b=2) == 3
        assert c.echo_raw(b"x" * 16) == b"x" * 16
        assert c.echo_raw(bytes(1 << 20)) == bytes(1 << 20)
        big = bytes(range(256)) * 4096  # 1 MiB; bytes go as they are, buffers from a copy
        for data in (big, big[:65536], big[7:1031], bytearray(big[:4096]), memoryview(big)[1:70001]):
            assert c.echo_raw(data) == bytes(data)
        assert c.echo_json("snow ☃ \"q\"") == "snow ☃ \"q\""
        p = c.centroid([{"x": 0, "y": 0}, {"x": 2.0, "y": 4.0, "label": None}])
        assert (p.x, p.y, p.label) == (1.0, 2.0, "centroid") and p == {"x": 1.0, "y": 2.0, "label": "centroid"}
        assert set(c.methods) == {"add", "centroid", "echo_json", "echo_raw"}
        assert c.methods["add"] == "add(i64 a,i64 b)->i64 @msgpack"
        assert c.service == "Echo" and c.address == echo.address and not c.closed
        assert "add" in dir(c)
    assert c.closed
    with pytest.raises(shmrpc.Unavailable, match="closed"):
        c.add(1, 2)
    c.close()  # twice is fine


def test_streaming_methods_are_shown(tmp_path):
    """A server's streaming methods (docs/streams.md) are shown as their table says."""
    from conftest import Server, shm_name
    table = tmp_path / "streams.tab"
    table.write_text("M\tdoubled\tdoubled(stream<i64> values)->stream<i64> @msgpack\n"
                     "M\tticks\tticks(i64 n)->stream<i64> @msgpack\n")
    s = Server("sh", shm_name("streams"), "-c", 'exec "$1" "$3" Ticker "$2"', "sh",
               os.environ["TABLE_SERVER"], str(table))
    try:
        with shmrpc.connect(s.address) as c:
            assert c.methods["ticks"] == "ticks(i64 n)->stream<i64> @msgpack"
            assert c.methods["doubled"] == \
                "doubled(stream<i64> values)->stream<i64> @msgpack"
    finally:
        s.stop()


@pytest.fixture(params=["shm", "tcp"])
def streamer(request):
    """stream-server (tests/stream/stream.svc's Streamer, in C) over shm://, then tcp://."""
    from conftest import Server, free_port, shm_name
    addr = shm_name("streamer") if request.param == "shm" else f"tcp://127.0.0.1:{free_port()}"
    s = Server(os.environ["STREAM_SERVER"], addr)
    yield s
    s.stop()


def test_a_stream_is_an_iterator_of_its_items(streamer):
    """A method whose result streams returns an iterator of its items, each once and in
    order, decoded as results are; its end stops the iteration; a failure raises after the
    items that came (docs/streams.md)."""
    with shmrpc.connect(streamer.address) as c:
        ticks = c.ticks(1000, -1, 0)
        assert isinstance(ticks, shmrpc.Stream)
        got = list(ticks)
        assert [t.at for t in got] == list(range(1000))
        assert got[2].note == "tick 2" and got[2].seen == [20, 21]
        assert next(ticks, "ended") == "ended"  # ended: nothing more
        assert list(c.ticks(0, -1, 0)) == []
        assert list(c.chunks(b"3 5")) == [b"aaaaa", b"bbbbb", b"ccccc"]
        big = list(c.chunks(b"2 1048576"))  # larger than the ring: in pieces
        assert [len(b) for b in big] == [1048576] * 2 and big[1] == b"b" * 1048576
        seen = []
        with pytest.raises(shmrpc.HandlerError, match="the handler failed: failed after 2"):
            for t in c.ticks(5, 2, -6):
                seen.append(t.at)
        assert seen == [0, 1]
        with pytest.raises(TypeError, match="argument 'n': expected an int"):
            c.ticks("3", -1, 0)
        assert c.twice(21) == 42


def test_a_stream_closed_early(streamer):
    """close(), or leaving its with block, ends a stream before its end; until then no call
    goes beside it on its client, and after it calls go on."""
    with shmrpc.connect(streamer.address) as c:
        with c.forever(0) as f:
            assert [next(f), next(f), next(f)] == [0, 1, 2]
            with pytest.raises(shmrpc.Error, match="a stream is open on this client"):
                c.twice(1)
        assert list(f) == []  # closed: nothing more
        assert c.twice(2) == 4
        f = c.forever(0)
        assert next(f) == 0
        f.close()
        f.close()  # once is enough
        assert c.twice(3) == 6
        f = c.forever(0)
        assert next(f) == 0
        del f  # collected: closed
        assert c.twice(4) == 8


def test_a_stream_outlived_by_its_client_or_broken(streamer):
    """A stream whose client closed ends with it: collected, closed or left, it raises
    nothing and crashes nothing; an item that does not decode raises and ends the stream
    (its client calls again); two threads that iterate one stream share its items."""
    c = shmrpc.connect(streamer.address)
    s = c.ticks(10, -1, 0)
    c.close()
    del s  # collected after its client closed (it recursed until the stack ran out)
    c = shmrpc.connect(streamer.address)
    with c.forever(0) as f:
        assert next(f) == 0
        c.close()
    f.close()
    assert list(f) == []  # closed with its client
    with shmrpc.connect(streamer.address) as c:
        t = c.ticks(5, 1, 1)  # the second item is a byte msgpack never uses
        assert next(t).at == 0
        with pytest.raises(shmrpc.Error, match="invalid msgpack byte"):
            next(t)
        assert list(t) == []
        assert c.twice(6) == 12
        import threading
        got, errors = [], []

        def take(stream):
            try:
                for x in stream:
                    got.append(x.at)
            except Exception as e:  # what the test reports, not swallows
                errors.append(e)
        for _ in range(20):
            got.clear()
            s = c.ticks(200, -1, 0)
            threads = [threading.Thread(target=take, args=(s,)) for _ in range(4)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(30)
            assert errors == [] and sorted(got) == list(range(200))


def test_a_stream_has_the_deadline_of_a_call(streamer):
    """The client's timeout bounds the whole stream: the items until then, then Timeout."""
    with shmrpc.connect(streamer.address, timeout=0.2) as c:
        assert count_until_timeout(c.forever(0)) > 0
        assert c.twice(5) == 10


def test_wrong_type_is_refused_before_sending(shm_echo):
    c = shmrpc.connect(shm_echo.address, timeout=0.3)
    os.killpg(shm_echo.proc.pid, signal.SIGSTOP)  # nothing can answer now
    try:
        # A call that went out would end in Timeout: these end before, at the argument.
        with pytest.raises(TypeError, match="argument 'b': expected an int"):
            c.add(1, "2")
        with pytest.raises(TypeError, match=r"argument 'points'\[1\]\.y: expected a float"):
            c.centroid([{"x": 1, "y": 2}, {"x": 1, "y": None}])
        with pytest.raises(shmrpc.Timeout) as e:
            c.add(1, 2)
        assert e.value.status_name == "SHMRPC_ETIMEDOUT" and isinstance(e.value.may_have_run, bool)
    finally:
        os.killpg(shm_echo.proc.pid, signal.SIGCONT)
    assert c.add(1, 2) == 3


def test_handler_error(echo):
    c = shmrpc.connect(echo.address)
    with pytest.raises(shmrpc.HandlerError) as e:
        c.add(2**62, 2**62)
    assert e.value.message == "add: 4611686018427387904 + 4611686018427387904 overflows i64"
    assert e.value.status_name == "SHMRPC_EINVAL" and e.value.may_have_run
    with pytest.raises(shmrpc.HandlerError, match="centroid of no points"):
        c.centroid([])
    assert isinstance(e.value, shmrpc.Error)
    assert c.add(1, 1) == 2


def test_nobody_serves():
    with pytest.raises(shmrpc.Unavailable) as e:
        shmrpc.connect(f"shm://pyt_nobody_{os.getpid()}")
    assert not e.value.may_have_run
    with pytest.raises(shmrpc.Unavailable):
        shmrpc.connect("tcp://127.0.0.1:1")
    with pytest.raises(shmrpc.Error) as e:
        shmrpc.connect("bogus://x")
    assert e.value.status_name == "SHMRPC_EINVAL"
    with pytest.raises(TypeError):
        shmrpc.connect(5)
    with pytest.raises(ValueError):
        shmrpc.connect("shm://x", timeout=-1)
    with pytest.raises(ValueError):
        shmrpc.connect("shm://x", max_message_size=-1)
    with pytest.raises(ValueError):
        shmrpc.connect("shm://x\0y")


def test_server_gone_and_back(echo):
    c = shmrpc.connect(echo.address, timeout=2)
    assert c.add(1, 2) == 3
    echo.stop()
    with pytest.raises(shmrpc.Unavailable):
        c.add(1, 2)
    from conftest import Server
    again = Server(os.environ["ECHO_SERVER"], echo.address)
    try:
        deadline = time.monotonic() + 10
        while True:  # the client connects again by itself, within its backoff
            try:
                assert c.add(2, 3) == 5
                break
            except shmrpc.Unavailable:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        again.stop()


def test_worker_killed_during_calls(shm_echo):
    """Killing the worker under a stream of calls: each failure is PeerDied or Unavailable
    and says whether it may have run; the manager's new worker then answers."""
    c = shmrpc.connect(shm_echo.address, timeout=5)
    with open(f"/proc/{shm_echo.proc.pid}/task/{shm_echo.proc.pid}/children") as f:
        worker = int(f.read().split()[0])
    failures = []
    stop = threading.Event()

    def calls():
        while not stop.is_set():
            try:
                c.echo_raw(bytes(1 << 16))
            except (shmrpc.PeerDied, shmrpc.Unavailable) as e:
                failures.append(e)

    t = threading.Thread(target=calls)
    t.start()
    time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    time.sleep(0.3)
    stop.set()
    t.join(20)
    assert not t.is_alive()
    for e in failures:
        assert isinstance(e.may_have_run, bool) and e.status_name in ("SHMRPC_EPEERDIED", "SHMRPC_EUNAVAIL")
    deadline = time.monotonic() + 10
    while True:
        try:
            assert c.add(3, 4) == 7
            break
        except shmrpc.Error:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_calls_while_the_server_is_gone_did_not_run(shm_echo):
    """After the server died, the call that finds it gone says whether a worker had taken it
    (none had: its workers died with it); each later one fails before anything is sent (the
    backoff's "trying again shortly", or no server to connect to): Unavailable, may_have_run
    false."""
    c = shmrpc.connect(shm_echo.address, timeout=2)
    assert c.add(1, 2) == 3
    os.killpg(shm_echo.proc.pid, signal.SIGKILL)
    shm_echo.proc.wait(10)
    failures = []
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and len(failures) < 200:
        with pytest.raises(shmrpc.Unavailable) as e:
            c.add(1, 2)
        failures.append(e.value)
    assert any("trying again shortly" in e.message for e in failures)
    assert "went away during the call" in failures[0].message
    assert [e.message for e in failures if e.may_have_run] == []


def test_options(echo, tmp_path):
    c = shmrpc.connect(echo.address, timeout=None, max_message_size=4096)
    assert c.add(1, 2) == 3
    with pytest.raises(shmrpc.Error) as e:
        c.echo_raw(bytes(8192))
    assert e.value.status_name == "SHMRPC_ETOOBIG" and not e.value.may_have_run
    assert c.echo_raw(bytes(100)) == bytes(100)
    secret = tmp_path / "secret"
    secret.write_bytes(b"s" * 32)
    secret.chmod(stat.S_IRUSR | stat.S_IWUSR)
    if echo.address.startswith("tcp://"):
        # A client with a secret connects only to a server that proves it holds it too.
        with pytest.raises(shmrpc.Error):
            shmrpc.connect(echo.address, secret_file=str(secret), timeout=2)
    with pytest.raises(shmrpc.Error, match="secret_file"):
        shmrpc.connect(echo.address, secret_file=str(tmp_path / "missing"))
    if echo.address.startswith("tcp://"):
        # TLS to a plain server fails at once, saying so; a CA file that is not there is
        # named (docs/wire.md, "TLS").
        with pytest.raises(shmrpc.Error, match="does not speak TLS") as e:
            shmrpc.connect(echo.address, tls=True, timeout=2)
        assert e.value.status_name == "SHMRPC_EPROTO"
        with pytest.raises(shmrpc.Error, match="cannot read the TLS CA file"):
            shmrpc.connect(echo.address, tls_ca=str(tmp_path / "missing.pem"), timeout=2)


def test_threads_share_a_client(echo):
    c = shmrpc.connect(echo.address)
    errors = []

    def work(k):
        try:
            for i in range(300):
                assert c.add(k, i) == k + i
                assert c.echo_raw(bytes([k]) * (i + 1)) == bytes([k]) * (i + 1)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors and not any(t.is_alive() for t in ts)


def test_gil_released_while_a_call_waits(shm_echo):
    c = shmrpc.connect(shm_echo.address, timeout=1.0)
    os.killpg(shm_echo.proc.pid, signal.SIGSTOP)
    ticks = 0
    done = threading.Event()

    def waiter():
        try:
            c.add(1, 2)
        except shmrpc.Timeout:
            pass
        done.set()

    try:
        t = threading.Thread(target=waiter)
        t.start()
        while not done.is_set():
            ticks += 1  # runs only if the waiting call let go of the GIL
            if ticks % 1000 == 0:
                time.sleep(0)
        t.join(10)
    finally:
        os.killpg(shm_echo.proc.pid, signal.SIGCONT)
    assert ticks > 1000, ticks
    assert c.add(1, 2) == 3


def test_forked_child_connects_again(echo):
    """A child forked while a thread of the parent is mid-call on the shared client (the
    server stopped meanwhile): the child neither waits on the lock that thread holds nor
    uses the parent's connection."""
    c = shmrpc.connect(echo.address)
    assert c.add(1, 2) == 3
    os.killpg(echo.proc.pid, signal.SIGSTOP)
    try:
        t = threading.Thread(target=lambda: c.add(5, 5))
        t.start()
        time.sleep(0.2)  # the thread now holds the client's lock, waiting for an answer
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                ok = all(c.add(i, 1) == i + 1 for i in range(100)) and c.echo_raw(b"kid") == b"kid"
                code = 0 if ok else 3
            except BaseException as e:  # noqa: BLE001
                print("child:", repr(e), file=sys.stderr)
                code = 2
            os._exit(code)
    finally:
        os.killpg(echo.proc.pid, signal.SIGCONT)
    t.join(10)
    assert wait_child(pid) == 0
    assert c.add(2, 2) == 4  # the parent's connection is untouched


def test_bad_use_never_crashes(echo):
    c = shmrpc.connect(echo.address)
    for bad in [(), (1,), (1, 2, 3), (None, None)]:
        with pytest.raises(TypeError):
            c._conn._call(*bad)
    with pytest.raises(TypeError):
        c._conn._call("add", [1, 2], None)
    with pytest.raises(TypeError):
        c._conn._call("add", (1, 2), [])
    with pytest.raises(ValueError):  # UnicodeEncodeError
        c._conn._call("\ud800", (), None)
    with pytest.raises(TypeError, match="has no parameter 5"):
        c._conn._call("add", (), {5: 1})
    with pytest.raises(AttributeError):
        c.__nope__
    with pytest.raises(RuntimeError):
        c._conn.__init__(echo.address)
    raw = shmrpc._shmrpc.Connection.__new__(shmrpc._shmrpc.Connection)
    with pytest.raises(shmrpc.Unavailable):
        raw._call("add", (1, 2), None)
    assert raw.closed and raw.address is None
    with pytest.raises(shmrpc.Unavailable):
        raw.methods
    raw.close()
    assert c.add(1, 2) == 3


def test_mismatch_when_another_service_comes_back(shm_echo):
    """The server at the address is replaced by one of another service: the client's
    reconnect checks the method table again, and the call fails with Mismatch."""
    c = shmrpc.connect(shm_echo.address, timeout=2)
    assert c.add(1, 2) == 3
    shm_echo.stop()
    from conftest import Server
    other = Server(os.environ["EVERY_SERVER"], shm_echo.address)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                c.add(1, 2)
                pytest.fail("a call to another service went through")
            except shmrpc.Unavailable:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            except shmrpc.Mismatch as e:
                assert e.status_name == "SHMRPC_EMISMATCH" and not e.may_have_run
                break
        assert shmrpc.connect(shm_echo.address).service == "Every"  # a new client fits it
    finally:
        other.stop()


def test_list_with_a_stopped_first_host():
    """tcp://A,B,C with A stopped (SIGSTOP: its kernel still takes connections, nothing
    answers): a new client connects and answers within about its call deadline, from Python
    and from shmrpcctl call alike (issue 33). Before, each waited 10 s on A: the dynamic codec
    connects twice (to learn the table, then with it), and each connect waited out the 5 s
    connect timeout on A whatever the call's deadline. The bound allows a loaded machine
    and is still half of those 10 s."""
    from conftest import Server, free_port
    hosts = [Server(os.environ["ECHO_SERVER"], f"tcp://127.0.0.1:{free_port()}") for _ in range(3)]
    try:
        os.killpg(hosts[0].proc.pid, signal.SIGSTOP)  # resumed by stop() below
        addr = "tcp://" + ",".join(h.address[len("tcp://"):] for h in hosts)
        for _ in range(2):
            t0 = time.monotonic()
            with shmrpc.connect(addr, timeout=1.0) as c:
                assert c.add(40, 2) == 42
            took = time.monotonic() - t0
            print(f"python: connected and answered in {took:.3f} s")
            assert took < 5.0, took
            t0 = time.monotonic()
            p = subprocess.run([os.environ["SHMRPCCTL"], "call", "--timeout", "1000", addr, "add",
                                "[40, 2]"], capture_output=True, text=True, timeout=60)
            took = time.monotonic() - t0
            print(f"shmrpcctl call: answered in {took:.3f} s")
            assert p.returncode == 0 and p.stdout.strip() == "42", (p.stdout, p.stderr)
            assert took < 5.0, took
    finally:
        for h in hosts:
            h.stop()


def test_faults_from_the_environment(monkeypatch):
    """SHMRPC_FAULTS (docs/faults.md) reaches Python: a C server's injected status comes to a
    Python client as its exception, and a Python client's own entry fails its calls unsent."""
    from conftest import Server, shm_name
    env = {**os.environ, "SHMRPC_FAULTS": "server:add:status=SHMRPC_EUNAVAIL"}
    s = Server(os.environ["ECHO_SERVER"], shm_name("faults"), env=env)
    try:
        with shmrpc.connect(s.address) as c:
            with pytest.raises(shmrpc.Unavailable,
                               match=r"injected by SHMRPC_FAULTS \(server:add:status=SHMRPC_EUNAVAIL\)"):
                c.add(1, 2)
            assert c.echo_json("ok") == "ok"
        monkeypatch.setenv("SHMRPC_FAULTS", "client:echo_json:status=EBUSY")
        with shmrpc.connect(s.address) as c:
            with pytest.raises(shmrpc.Error, match=r"\(client:echo_json:status=EBUSY\): not sent") as e:
                c.echo_json("ok")
            assert e.value.status_name == "SHMRPC_EBUSY"
    finally:
        s.stop()


@pytest.mark.parametrize("transport", ["shm", "tcp"])
def test_idempotent_retried(transport, tmp_path):
    """A call of an @idempotent method whose worker dies mid-call is made again and answers
    (docs/retries.md); a method without @idempotent fails with PeerDied and runs once. The
    Python server's table, read from the .svc, carries the annotation to the client."""
    import sys
    from conftest import Server, free_port, python_env, shm_name
    svc = os.path.join(os.path.dirname(__file__), "..", "shm", "retry.svc")
    server_py = os.path.join(os.path.dirname(__file__), "retry_server.py")
    notes = str(tmp_path / "notes")
    addr = shm_name("retry") if transport == "shm" else f"tcp://127.0.0.1:{free_port()}"
    s = Server(sys.executable, addr, server_py, svc, notes, env=python_env())
    try:
        c = shmrpc.connect(addr, timeout=5)
        assert c.get(1) == 2
        d = subprocess.run([os.environ["SHMRPCCTL"], "describe", addr, "hello"],
                           capture_output=True, text=True, timeout=30)
        assert (d.returncode, d.stdout) == (0, "@json @idempotent string hello(string who);\n"), \
            d.stderr
        open(notes, "w").close()
        open(notes + ".die", "w").close()
        assert c.get(41) == 42
        with open(notes) as f:
            assert f.read().split() == ["get", "get"]
        open(notes, "w").close()
        open(notes + ".die", "w").close()
        with pytest.raises(shmrpc.PeerDied):
            c.bump(1)
        with open(notes) as f:
            assert f.read().split() == ["bump"]
        c.close()
    finally:
        s.stop()
