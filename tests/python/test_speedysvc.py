# SPDX-License-Identifier: MIT
"""speedysvc's API (docs/python.md, "speedysvc's API"): the seeds' own examples (seed 000's
echo pair and service.ini under python3 -m shmrpc.service, seed 001's quick example under
python3 -m speedysvc.service) with only their names, ports and log_dir made this run's
own; each decorator's round trip; hinted methods called by shmrpcctl and compiled by
shmrpcgen from python3 -m shmrpc.svc; pickle over tcp:// refused without
force_insecure_serialisation; a worker killed with SIGKILL replaced. Every supervisor,
worker and segment is gone after each test, also when it fails."""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

import shmrpc
from conftest import DIE_WITH_PARENT, Server, free_port, python_env, segments_of, wait_for

SHMRPCCTL = os.environ["SHMRPCCTL"]

# Seed 000 ("Example"), as written there.
SEED000_SERVER = '''\
from shmrpc import ServerMethodsBase, raw_method, json_method

class EchoServer(ServerMethodsBase):
    port = 5555
    name = 'echo_serv'

    # Note that raw_method can only send data as the "bytes" type.
    # json, msgpack, pickle, marshal etc are options in place of raw,
    # with significantly differing performance, serialisable types
    # and security: please see below.
    @raw_method
    def echo_raw(self, data):
        return data

    @json_method
    def echo_json(self, data):
        return data
'''
SEED000_CLIENT = '''\
from shmrpc import ClientMethodsBase, SHMClient
from echoserver import EchoServer

class EchoClient(ClientMethodsBase):
    def __init__(self, client_provider):
        ClientMethodsBase.__init__(self, client_provider)

    # echo_raw = TestServerMethods.echo_raw.as_rpc()
    # can also do the same as the below code.
    def echo_raw(self, data):
        return self.send(EchoServer.echo_raw, data)

    # Note that "data" is actually a list of arguments
    # for non-raw serialisers.
    def echo_json(self, data):
        return self.send(EchoServer.echo_json, [data])

if __name__ == '__main__':
    # client can be replaced with NetworkClient(host_address)
    # to allow for remote connections. The tcp_bind ini setting
    # must be set in this case: see below.
    client = connect()
    methods = EchoClient(client)
    print("Received data:", methods.echo_raw(b"Lorem ipsum"))
'''
SEED000_INI = '''\
[defaults]
#tcp_bind=127.0.0.1
log_dir=/tmp/test_server_logs/

[EchoServer]
import_from=echoserver
'''
# Seed 001 ("Quick Example"), as written there.
SEED001_SERVER = '''\
from speedysvc import ServerMethodsBase, json_method

class EchoServer(ServerMethodsBase):
    port = 5555
    name = 'echo_serv'

    @json_method
    def echo_json(self, data):
        return data
'''
SEED001_CLIENT = '''\
from speedysvc import ClientMethodsBase, connect
from echoserver import EchoServer

class EchoClient(ClientMethodsBase):
    def echo_json(self, data):
        return self.send(EchoServer.echo_json, [data])

if __name__ == '__main__':
    # Note: Replace 'shm://' with 'tcp://(host)' for remote services
    methods = EchoClient(connect(EchoServer, 'shm://'))
    print(methods.echo_json("Hello World!"))
'''
SEED001_INI = '''\
[defaults]
# Uncomment this line to listen on the network
#bind_tcp=(host adaptor)
log_dir=/tmp/test_server_logs/

[EchoServer]
import_from=echoserver
max_proc_num=3
min_proc_num=3
'''

# Every decorator, with hints where the encoding has a signature of its own.
ALL_KINDS = '''\
import dataclasses
import enum
from typing import Optional

from shmrpc import (ServerMethodsBase, json_method, marshal_method, msgpack_method,
                    pickle_method, raw_method)


class Color(enum.Enum):
    red = 1
    green = 2


@dataclasses.dataclass
class Point:
    x: float
    y: float
    color: Optional[Color] = None


class Kinds(ServerMethodsBase):
    port = PORT
    name = NAME

    @raw_method
    def echo_raw(self, data):
        return data[::-1]

    @json_method
    def greet(self, who: str, times: Optional[int] = None) -> str:
        return "hello " + who * (times or 1)

    @msgpack_method
    def tally(self, words: dict[str, list[int]], flag: bool) -> dict[str, int]:
        return {k: sum(v) + flag for k, v in words.items()}

    @msgpack_method
    def centroid(self, points: list[Point]) -> Point:
        n = len(points)
        return Point(sum(p.x for p in points) / n, sum(p.y for p in points) / n,
                     points[0].color)

    @msgpack_method
    def nothing(self) -> None:
        return None

    @msgpack_method
    def scale(self, x: float, k: float) -> float:
        return x * k

    @pickle_method
    def swap_pickle(self, a, b):
        return (b, a)

    @marshal_method
    def swap_marshal(self, a, b):
        return (b, a)
'''
KINDS_SERVE = '''\
import sys
import shmrpc
from kinds import Kinds
shmrpc.serve_class(Kinds, sys.argv[1], workers=2,
                   force_insecure_serialisation=sys.argv[2:] == ["force"])
'''


def seed(text, name, port, log_dir=None):
    """A seed's file with this run's shm:// name, port and log_dir."""
    text = text.replace("'echo_serv'", repr(name)).replace("port = 5555", f"port = {port}")
    return text.replace("/tmp/test_server_logs/", str(log_dir)) if log_dir else text


class Supervised:
    """python3 -m MODULE.service service.ini in folder (the supervisor execs in its place),
    stopped with SIGTERM (SIGKILL to its group past 30 s) and its segments checked."""

    def __init__(self, folder, names, module="shmrpc"):
        self.folder, self.names = folder, names
        self.proc = subprocess.Popen([*DIE_WITH_PARENT, sys.executable, "-m",
                                      f"{module}.service", "service.ini"],
                                     cwd=folder, env=python_env(), stdin=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.ini = str(folder / "logs" / "service.shmrpc.ini")
        self.err = ""

    def status(self):
        out = subprocess.run([SHMRPCCTL, "--ini", self.ini, "status", "--json"],
                             capture_output=True, text=True, timeout=20)
        return {s["name"]: s for s in json.loads(out.stdout)} if out.returncode == 0 else {}

    def running(self, service, workers):
        def check():
            if self.proc.poll() is not None:
                raise AssertionError(f"the supervisor exited with {self.proc.returncode}: "
                                     + self.proc.stderr.read().decode(errors="replace"))
            s = self.status().get(service, {})
            return s if s.get("state") == "running" and len(s["worker_pids"]) == workers \
                else None
        return wait_for(f"{service} running with {workers} workers", check)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.err = self.proc.stderr.read().decode(errors="replace")
        self.proc.stderr.close()
        left = [f for n in self.names for f in segments_of(n)]
        for f in left:
            os.unlink(f)
        return left


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "logs").mkdir()
    return tmp_path


def run_py(folder, script, timeout=30):
    return subprocess.run([sys.executable, script], cwd=folder, env=python_env(),
                          capture_output=True, text=True, timeout=timeout)


def test_seed000_echo_pair_under_shmrpc_service(folder):
    """Seed 000's echoserver.py, echoclient.py and service.ini, its tcp_bind uncommented:
    called over shm:// by echoclient.py (its connect() line, which the seed never imports,
    made SHMClient(EchoServer) as its comment says) and over tcp:// by NetworkClient."""
    name, port = f"echo_serv_{os.getpid()}_000", free_port()
    (folder / "echoserver.py").write_text(seed(SEED000_SERVER, name, port))
    (folder / "echoclient.py").write_text(
        SEED000_CLIENT.replace("client = connect()", "client = SHMClient(EchoServer)"))
    (folder / "service.ini").write_text(
        seed(SEED000_INI, name, port, folder / "logs").replace("#tcp_bind", "tcp_bind"))
    sup = Supervised(folder, [name])
    try:
        sup.running("EchoServer", 1)
        sup.running("EchoServer.tcp", 1)
        out = run_py(folder, "echoclient.py")
        assert out.returncode == 0, out.stderr
        assert out.stdout == "Received data: b'Lorem ipsum'\n"
        code = textwrap.dedent(f"""
            from shmrpc import NetworkClient, connect
            from echoclient import EchoClient
            from echoserver import EchoServer
            for m in (EchoClient(NetworkClient('127.0.0.1')),
                      EchoClient(NetworkClient(EchoServer, host='127.0.0.1', port={port})),
                      EchoClient(connect(EchoServer, 'tcp://127.0.0.1')),
                      EchoClient(connect(EchoServer, 'tcp://127.0.0.1:{port}')),
                      EchoClient(connect(EchoServer, 'shm://'))):
                assert m.echo_raw(b"Lorem ipsum") == b"Lorem ipsum"
                assert m.echo_json({{"a": [1, 2.5, None, "x"]}}) == {{"a": [1, 2.5, None, "x"]}}
                print(m.client_provider.address)
            """)
        out = subprocess.run([sys.executable, "-c", code], cwd=folder, env=python_env(),
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == [f"tcp://127.0.0.1:{port}"] * 4 + [f"shm://{name}"]
    finally:
        left = sup.stop()
    assert sup.proc.returncode == 0, sup.err
    assert not left, left
    assert "EchoServer: stopped (it exited with status 0)" in sup.err
    assert "EchoServer.tcp: stopped (it exited with status 0)" in sup.err


def test_seed001_quick_example_under_speedysvc_service(folder):
    """Seed 001's quick example word for word (`from speedysvc import ...`, connect(EchoServer,
    'shm://'), python3 -m speedysvc.service), its three workers as its ini asks."""
    name, port = f"echo_serv_{os.getpid()}_001", free_port()
    (folder / "echoserver.py").write_text(seed(SEED001_SERVER, name, port))
    (folder / "echoclient.py").write_text(SEED001_CLIENT)
    (folder / "service.ini").write_text(seed(SEED001_INI, name, port, folder / "logs"))
    sup = Supervised(folder, [name], module="speedysvc")
    try:
        sup.running("EchoServer", 3)
        # min_proc_num and max_proc_num reach the supervisor, which scales between them.
        written = open(sup.ini).read()
        assert "\nmax_proc_num = 3\nmin_proc_num = 3\n" in written.split("[EchoServer]")[1]
        assert "EchoServer.tcp" not in sup.status()  # bind_tcp commented out: no tcp://
        out = run_py(folder, "echoclient.py")
        assert out.returncode == 0, out.stderr
        assert out.stdout == "Hello World!\n"
    finally:
        left = sup.stop()
    assert sup.proc.returncode == 0, sup.err
    assert not left, left


def test_worker_killed_is_replaced_and_service_restarted(folder):
    """A worker killed with SIGKILL is replaced (the service keeps its pid), the service's
    process killed is restarted by the supervisor, and the next call works each time."""
    name, port = f"echo_serv_{os.getpid()}_kill", free_port()
    (folder / "echoserver.py").write_text(seed(SEED001_SERVER, name, port).replace(
        "echo_json(self, data)", "echo_json(self, data: str) -> str"))
    (folder / "echoclient.py").write_text(SEED001_CLIENT)
    (folder / "service.ini").write_text(
        "[defaults]\nlog_dir = logs\nrestart_backoff_ms = 100\n\n"
        "[EchoServer]\nimport_from = echoserver\nmin_proc_num = 2\nmax_proc_num = 2\n")
    sup = Supervised(folder, [name])
    try:
        st = sup.running("EchoServer", 2)
        pid, victim = st["pid"], st["worker_pids"][0]
        os.kill(victim, signal.SIGKILL)
        st = wait_for("the worker replaced", lambda: (
            lambda s: s if len(s.get("worker_pids", [])) == 2 and victim not in s["worker_pids"]
            else None)(sup.status().get("EchoServer", {})))
        assert st["pid"] == pid and st["restarts"] == 0
        out = run_py(folder, "echoclient.py")
        assert out.returncode == 0 and out.stdout == "Hello World!\n", out.stderr

        os.kill(pid, signal.SIGKILL)
        st = wait_for("the service restarted", lambda: (
            lambda s: s if s.get("state") == "running" and s["pid"] not in (0, pid)
            and len(s["worker_pids"]) == 2 else None)(sup.status().get("EchoServer", {})))
        assert st["restarts"] >= 1
        out = run_py(folder, "echoclient.py")
        assert out.returncode == 0 and out.stdout == "Hello World!\n", out.stderr
    finally:
        left = sup.stop()
    assert sup.proc.returncode == 0, sup.err
    assert not left, left


@pytest.fixture
def kinds(folder):
    """kinds.py (ALL_KINDS) served by serve_class at shm://, 2 workers."""
    name, port = f"kinds_{os.getpid()}", free_port()
    (folder / "kinds.py").write_text(ALL_KINDS.replace("PORT", str(port))
                                     .replace("NAME", repr(name)))
    (folder / "serve.py").write_text(KINDS_SERVE)
    s = Server(sys.executable, f"shm://{name}", str(folder / "serve.py"), env=python_env())
    s.name, s.port, s.folder = name, port, folder
    sys.path.insert(0, str(folder))
    try:
        yield s
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("kinds", None)
        s.stop()
        left = segments_of(name)
    assert not left, left


def test_each_decorator_round_trips(kinds):
    from kinds import Color, Kinds, Point
    from shmrpc import ClientMethodsBase

    class KindsClient(ClientMethodsBase):
        echo_raw = Kinds.echo_raw.as_rpc()
        greet = Kinds.greet.as_rpc()
        tally = Kinds.tally.as_rpc()
        centroid = Kinds.centroid.as_rpc()
        nothing = Kinds.nothing.as_rpc()
        swap_pickle = Kinds.swap_pickle.as_rpc()

        def swap_marshal(self, a, b):
            return self.send(Kinds.swap_marshal, [a, b])

    with shmrpc.SHMClient(Kinds) as provider:
        c = KindsClient(provider)
        assert c.echo_raw(b"\x00abc") == b"cba\x00"
        assert c.greet("bob", 2) == "hello bobbob" and c.greet("x", None) == "hello x"
        assert c.tally({"a": [1, 2], "b": []}, True) == {"a": 4, "b": 1}
        p = c.centroid([Point(0, 0, Color.green), Point(2.0, 4.0)])
        assert p == Point(1.0, 2.0, Color.green)  # a dataclass with its enum member
        assert c.nothing() is None
        odd = {1: (2, 3), "s": frozenset({4}), None: [b"x", 1.5]}  # what only pickle carries
        assert c.swap_pickle(odd, {7}) == ({7}, odd)
        assert c.swap_marshal([1, 2.5], {"a": b"x"}) == ({"a": b"x"}, [1, 2.5])
        with pytest.raises(TypeError, match=r"'points'\[0\]\.x: expected a float"):
            c.centroid([{"x": "0", "y": 0}])  # the signature checks before sending
    # The method table names each encoding; a plain shmrpc client reads it.
    with shmrpc.connect(f"shm://{kinds.name}") as c:
        assert c.methods == {
            "centroid": "centroid(list<struct Point{f64 x;f64 y;enum Color{red=1,green=2}? "
                        "color;}> points)->struct Point @msgpack",
            "echo_raw": "echo_raw(bytes data)->bytes @raw",
            "greet": "greet(string who,i64? times)->string @json",
            "nothing": "nothing()->void @msgpack",
            "scale": "scale(f64 x,f64 k)->f64 @msgpack",
            "swap_marshal": "swap_marshal(bytes data)->bytes @marshal",
            "swap_pickle": "swap_pickle(bytes data)->bytes @pickle",
            "tally": "tally(map<string,list<i64>> words,bool flag)->map<string,i64> @msgpack",
        }
        assert c.centroid([{"x": 1, "y": 3, "color": "red"}]) == {"x": 1.0, "y": 3.0,
                                                                  "color": "red"}


def test_client_of_another_table_is_refused(kinds):
    """A client whose class does not match the server's table: Mismatch naming both."""
    from shmrpc import ServerMethodsBase, msgpack_method

    class Kinds(ServerMethodsBase):
        port, name = kinds.port, kinds.name

        @msgpack_method
        def tally(self, words: dict[str, list[int]], flag: int) -> dict[str, int]:
            pass

    with shmrpc.SHMClient(Kinds) as p:
        with pytest.raises(shmrpc.Mismatch, match=r"tally: the service at shm://.* has "
                           r"'tally\(map<string,list<i64>> words,bool flag\)"):
            p.send(Kinds.tally, [{}, 1])


def test_hinted_methods_called_by_shmrpcctl(kinds):
    def call(method, args):
        return subprocess.run([SHMRPCCTL, "call", f"shm://{kinds.name}", method, args],
                              capture_output=True, text=True, timeout=20)
    out = call("centroid", '[[{"x":1,"y":2,"color":"green"},{"x":3,"y":4}]]')
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"x": 2.0, "y": 3.0, "color": "green"}
    out = call("greet", '{"who":"ann","times":3}')
    assert out.returncode == 0 and json.loads(out.stdout) == "hello annannann", out.stderr
    out = call("echo_raw", '["abc"]')  # a @raw method's bytes as shmrpcctl gives them
    assert out.returncode == 0 and json.loads(out.stdout) == "cba", out.stderr
    for method, enc in (("swap_pickle", "pickle"), ("swap_marshal", "marshal")):
        out = call(method, '["gAU="]')
        assert out.returncode != 0
        assert f"a @{enc} method is called from Python only" in out.stderr


def test_svc_printer_output_compiles_with_shmrpcgen(kinds, tmp_path):
    """python3 -m shmrpc.svc kinds:Kinds is what the server serves: shmrpcgen compiles it,
    and the method table it writes for C clients is the server's, signature by signature."""
    out = subprocess.run([sys.executable, "-m", "shmrpc.svc", "kinds:Kinds"], cwd=kinds.folder,
                         env=python_env(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    svc = tmp_path / "kinds.svc"
    svc.write_text(out.stdout)
    gen = subprocess.run([os.environ["SHMRPCGEN"], "-o", str(tmp_path / "gen"), str(svc)],
                         capture_output=True, text=True, timeout=30)
    assert gen.returncode == 0, gen.stderr
    table = (tmp_path / "gen" / "kinds.c").read_text()
    # The table names its structs and enums and describes each once (issue 36); each
    # fingerprint hashes the canonical signature, which c.methods shows: FNV-1a 64 of it.
    written = {m: int(fp, 16) for m, fp in
               re.findall(r'\.name = "(\w+)",[^}]*?\.fingerprint = UINT64_C\((0x[0-9a-f]+)\)',
                          table)}

    def fnv1a(text):
        h = 0xcbf29ce484222325
        for b in text.encode():
            h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
        return h

    with shmrpc.connect(f"shm://{kinds.name}") as c:
        assert written == {m: fnv1a(sig) for m, sig in c.methods.items()}
        assert len(written) == len(c.methods)


def test_shmrpcctl_describe_reads_the_table_back(kinds, tmp_path):
    """shmrpcctl describe writes the table a Python server serves as a .svc (issue 38), its
    Python-only methods by their annotations; shmrpcgen finds it the same service as the
    .svc python3 -m shmrpc.svc prints for the class."""
    out = subprocess.run([SHMRPCCTL, "describe", f"shm://{kinds.name}"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "    @pickle bytes swap_pickle(bytes data);\n" in out.stdout
    assert "    @marshal bytes swap_marshal(bytes data);\n" in out.stdout
    described = tmp_path / "described.svc"
    described.write_text(out.stdout.replace("// port: not in the method table",
                                            f"port {kinds.port};"))
    printed = subprocess.run([sys.executable, "-m", "shmrpc.svc", "kinds:Kinds"],
                             cwd=kinds.folder, env=python_env(), capture_output=True, text=True,
                             timeout=30)
    assert printed.returncode == 0, printed.stderr
    (tmp_path / "kinds.svc").write_text(printed.stdout)
    compat = subprocess.run([os.environ["SHMRPCGEN"], "--check-compat", str(tmp_path / "kinds.svc"),
                             str(described)], capture_output=True, text=True, timeout=30)
    assert compat.returncode == 0, compat.stdout + compat.stderr
    assert compat.stdout.count(": the same\n") == 2, compat.stdout


def test_svc_printer_errors(tmp_path):
    (tmp_path / "bad.py").write_text(textwrap.dedent("""
        from shmrpc import ServerMethodsBase, msgpack_method
        class Bad(ServerMethodsBase):
            port, name = 5555, "bad"
            @msgpack_method
            def f(self, x: complex) -> int:
                pass
        """))
    out = subprocess.run([sys.executable, "-m", "shmrpc.svc", "bad:Bad"], cwd=tmp_path,
                         env=python_env(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert out.stderr.startswith("shmrpc.svc: Bad.f: parameter x: <class 'complex'> has no "
                                 ".svc type")


@pytest.mark.parametrize("method, message", [
    ("def g(self, n: int):\n    yield n", "Gen.g: a generator function (it yields) cannot be "
     "served: a call gets one result"),
    ("async def g(self, n: int) -> int:\n    return n", "Gen.g: a coroutine function (async "
     "def) cannot be served: a call gets one result"),
    ("async def g(self, n):\n    yield n", "Gen.g: a generator function (it yields) cannot "
     "be served"),
])
def test_generator_and_coroutine_methods_refused(tmp_path, method, message):
    """A method that yields or is async would give the client a generator or coroutine
    object, which no encoding holds: refused when the class is printed or served."""
    (tmp_path / "gen.py").write_text(
        "from shmrpc import ServerMethodsBase, json_method\n"
        "class Gen(ServerMethodsBase):\n    port, name = 5555, 'gen'\n    @json_method\n"
        + textwrap.indent(method, "    ") + "\n")
    out = subprocess.run([sys.executable, "-m", "shmrpc.svc", "gen:Gen"], cwd=tmp_path,
                         env=python_env(), capture_output=True, text=True, timeout=30)
    assert (out.returncode, out.stderr[:len("shmrpc.svc: ") + len(message)]) == (
        1, "shmrpc.svc: " + message), out.stderr
    out = run_bounded(tmp_path, "-c", "import shmrpc, gen; shmrpc.serve_class(gen.Gen, 'shm://')")
    assert out.returncode == 1 and "TypeError: " + message in out.stderr, out.stderr


def write_kinds_service(folder, extra=""):
    name, port = f"kinds_{os.getpid()}_ini", free_port()
    (folder / "kinds.py").write_text(ALL_KINDS.replace("PORT", str(port))
                                     .replace("NAME", repr(name)))
    (folder / "service.ini").write_text(
        "[defaults]\nlog_dir = logs\ntcp_bind = 127.0.0.1\n" + extra + "\n[Kinds]\n"
        "import_from = kinds\n")
    return name, port


def run_bounded(folder, *args, bound=30):
    """python3 ARGS in folder, expected to end by itself: killed with its process group
    past bound seconds (a refusal that failed would serve for ever)."""
    p = subprocess.Popen([*DIE_WITH_PARENT, sys.executable, *args], cwd=folder,
                         env=python_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=bound)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # (a supervisor's services die with it)
        p.wait(10)
        p.stdout.close()
        p.stderr.close()
        raise AssertionError(f"python3 {' '.join(args)} did not end within {bound} s")
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def test_pickle_over_tcp_refused_without_force_insecure_serialisation(folder):
    name, port = write_kinds_service(folder)
    out = run_bounded(folder, "-m", "shmrpc.service", "service.ini")
    assert out.returncode == 1
    assert out.stderr == (
        "service.ini:3: error: [Kinds] serves tcp:// (tcp_bind = 127.0.0.1) and has "
        "swap_marshal (@marshal), swap_pickle (@pickle): unpickling what a network client "
        "sends can run its code, so these are served over tcp:// only with "
        "force_insecure_serialisation = true\n")
    assert not segments_of(name)
    # serve_class itself refuses too, before anything is served.
    out = run_bounded(folder, "-c", "import shmrpc, kinds; "
                      "shmrpc.serve_class(kinds.Kinds, 'tcp://127.0.0.1')")
    assert out.returncode == 1
    assert re.search(r"ValueError: Kinds would serve swap_marshal \(@marshal\), swap_pickle "
                     r"\(@pickle\) at tcp://127\.0\.0\.1:\d+: .*force_insecure_serialisation",
                     out.stderr), out.stderr


def test_pickle_over_tcp_allowed_with_force_insecure_serialisation(folder):
    name, port = write_kinds_service(folder, "force_insecure_serialisation = true\n")
    sup = Supervised(folder, [name])
    try:
        sup.running("Kinds.tcp", 1)
        sup.running("Kinds", 1)
        code = textwrap.dedent("""
            import shmrpc
            from kinds import Kinds
            # The client unpickles what the server sends: refused over tcp:// unless it
            # is forced too, for each way of making a tcp:// client.
            for p in (shmrpc.connect(Kinds, "tcp://127.0.0.1"), shmrpc.NetworkClient(Kinds),
                      shmrpc.NetworkClient("127.0.0.1")):
                for m in (Kinds.swap_pickle, Kinds.swap_marshal):
                    try:
                        p.send(m, [1, 2])
                        raise SystemExit(f"{p}: {m.__name__} was called")
                    except ValueError as e:
                        assert "force_insecure_serialisation=True" in str(e), e
                assert p.send(Kinds.greet, ["x"]) == "hello x"
                p.close()
            with shmrpc.SHMClient(Kinds) as p:  # shm:// is this machine's: no force
                assert p.send(Kinds.swap_pickle, [1, 2]) == (2, 1)
            with shmrpc.connect(Kinds, "tcp://127.0.0.1",
                                force_insecure_serialisation=True) as p:
                assert p.send(Kinds.swap_pickle, [{1: 2}, (3,)]) == ((3,), {1: 2})
                assert p.send(Kinds.swap_marshal, [1, "a"]) == ("a", 1)
                assert p.send(Kinds.greet, ["tcp"]) == "hello tcp"
            """)
        out = subprocess.run([sys.executable, "-c", code], cwd=folder, env=python_env(),
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
    finally:
        left = sup.stop()
    assert sup.proc.returncode == 0, sup.err
    assert not left, left


@pytest.mark.parametrize("body, message", [
    ("[defaults]\nlog_dir = logs\nmax_proc = 3\n\n[EchoServer]\nimport_from = echoserver\n",
     "service.ini:3: error: unknown key 'max_proc' in [defaults]; known: "),
    ("[defaults]\nlog_dir = logs\n\n[EchoServer]\nimport_from = echoserver\nport = 5\n",
     "service.ini:6: error: unknown key 'port' in [EchoServer] (a service's port and name are "
     "its class's port and name attributes; its host is tcp_bind); known: "),
    ("[defaults]\nlog_dir = logs\n\n[EchoServer]\nimport_from = nosuchmodule\n",
     "service.ini:5: error: [EchoServer] import_from = nosuchmodule: ModuleNotFoundError: "),
    ("[defaults]\nlog_dir = logs\ntcp_bind = 127.0.0.1\nbind_tcp = 127.0.0.1\n\n"
     "[EchoServer]\nimport_from = echoserver\n",
     "service.ini:3: error: [defaults] has both tcp_bind and bind_tcp (line 4): keep one"),
    # configparser's own refusals, at their lines
    ("[defaults]\nlog_dir = logs\n\n[EchoServer]\nimport_from = echoserver\n[defaults]\n",
     "service.ini:6: error: section [defaults] written twice (first at line 1)"),
    ("[defaults]\nlog_dir = logs\n\n[EchoServer]\nimport_from = echoserver\n"
     "Import_From = other\n",
     "service.ini:6: error: key 'import_from' written twice in [EchoServer] (first at line 5)"),
    ("log_dir = logs\n[defaults]\n",
     "service.ini:1: error: a [section] must come first, not: log_dir = logs"),
    ("[defaults]\nlog_dir = logs\nnot a key\n[EchoServer]\nimport_from = echoserver\nnor\n",
     "service.ini:3: error: expected [section] or key = value: not a key\n"
     "service.ini:6: error: expected [section] or key = value: nor"),
    # a line that continues the value above, as configparser reads it: the value's line
    ("[defaults]\nlog_dir = logs\n\n[EchoServer]\nimport_from = echo\n  server\n",
     "service.ini:5: error: [EchoServer] import_from = echo\nserver: ModuleNotFoundError: "),
    # configparser's [DEFAULT] is a section like any other here
    ("[DEFAULT]\nlog_dir = logs\n\n[EchoServer]\nimport_from = echoserver\n",
     "service.ini: error: [defaults] needs log_dir"),
])
def test_ini_errors_name_the_line(folder, body, message):
    (folder / "echoserver.py").write_text(SEED001_SERVER)
    (folder / "service.ini").write_text(body)
    out = run_bounded(folder, "-m", "shmrpc.service", "service.ini")
    assert out.returncode == 1
    assert out.stderr.startswith(message), out.stderr


def test_service_usage(folder):
    """No file: usage on stderr, exit 2; --help: on stdout, exit 0; --print before or after
    the file."""
    usage = ("usage: python3 -m shmrpc.service [--print] service.ini\n"
             "  --print  prints the file shmrpc-service would run, and runs nothing\n")
    for args, rc in (((), 2), (("--bogus", "service.ini"), 2), (("a.ini", "b.ini"), 2)):
        out = run_bounded(folder, "-m", "shmrpc.service", *args)
        assert (out.returncode, out.stdout, out.stderr) == (rc, "", usage), args
    out = run_bounded(folder, "-m", "speedysvc.service", "--help")
    assert (out.returncode, out.stdout, out.stderr) == (0, usage, "")
    (folder / "echoserver.py").write_text(SEED001_SERVER)
    (folder / "service.ini").write_text(SEED001_INI)
    out = run_bounded(folder, "-m", "shmrpc.service", "service.ini", "--print")
    assert out.returncode == 0 and "\n[EchoServer]\nexec = " in out.stdout, out.stderr


def test_log_dir_that_cannot_be_made_names_the_line(folder):
    (folder / "echoserver.py").write_text(SEED001_SERVER)
    (folder / "afile").write_text("")
    (folder / "service.ini").write_text(
        "[defaults]\n# a file's subfolder\nlog_dir = afile/logs\n\n[EchoServer]\n"
        "import_from = echoserver\n")
    out = run_bounded(folder, "-m", "shmrpc.service", "service.ini")
    assert (out.returncode, out.stderr) == (
        1, f"service.ini:3: error: log_dir = {folder}/afile/logs: cannot write "
        "service.shmrpc.ini there: Not a directory\n")


TWO_CLASSES = '''\
from shmrpc import ServerMethodsBase, json_method

class A(ServerMethodsBase):
    port, name = 5555, "one"

    @json_method
    def ping(self) -> str:
        return "a"

class B(A):
    name = NAME

    @json_method
    def pong(self) -> str:
        return "b"
'''


@pytest.mark.parametrize("b_name, tcp, message", [
    ("'one'", "", "service.ini:7: error: [B] has the name 'one' of [A] (line 5): each class "
     "needs its own name (B.name)\n"),
    ("'two'", "tcp_bind = 127.0.0.1\n", "service.ini:8: error: [B] has the port 5555 of [A] "
     "(line 6): each class needs its own port (B.port)\n"),
])
def test_two_classes_of_one_name_or_port_refused(folder, b_name, tcp, message):
    """The second would find the first's server at its address and fail at each restart
    (while the supervisor, seeing the first answer there, took it for started)."""
    (folder / "two.py").write_text(TWO_CLASSES.replace("NAME", b_name))
    (folder / "service.ini").write_text(
        f"[defaults]\nlog_dir = logs\n{tcp}\n[A]\nimport_from = two\n[B]\nimport_from = two\n")
    out = run_bounded(folder, "-m", "shmrpc.service", "service.ini")
    assert (out.returncode, out.stderr) == (1, message)


def test_two_classes_of_one_port_without_tcp_served(folder):
    """Without tcp_bind a class's port is not used: the same port twice is no error."""
    (folder / "two.py").write_text(TWO_CLASSES.replace("NAME", "'two'"))
    (folder / "service.ini").write_text(
        "[defaults]\nlog_dir = logs\n\n[A]\nimport_from = two\n[B]\nimport_from = two\n")
    out = run_bounded(folder, "-m", "shmrpc.service", "--print", "service.ini")
    assert out.returncode == 0, out.stderr
    assert "shm_name = one" in out.stdout and "shm_name = two" in out.stdout


@pytest.mark.parametrize("bind, refused", [
    ("0.0.0.0", True), ("::", True), ("::ffff:10.0.0.1", True), ("127.0.0.2", False),
    ("::1", False), ("::ffff:127.0.0.1", False), ("localhost", False)])
def test_tcp_bind_not_loopback_needs_secret_file(folder, bind, refused):
    """Without a secret, a tcp:// server refuses to bind an address other than loopback:
    the ini says so at its line, rather than a [ClassName.tcp] that fails at each start
    with the reason in its log only."""
    (folder / "echoserver.py").write_text(SEED001_SERVER)
    (folder / "service.ini").write_text(
        f"[defaults]\nlog_dir = logs\nbind_tcp = {bind}\n\n[EchoServer]\n"
        "import_from = echoserver\n")
    out = run_bounded(folder, "-m", "shmrpc.service", "--print", "service.ini")
    if refused:
        assert (out.returncode, out.stderr) == (
            1, f"service.ini:3: error: [EchoServer] serves tcp:// at {bind} (tcp_bind), which "
            "is not a loopback address: it needs secret_file (the shared secret its clients "
            "prove), in [defaults] or [EchoServer]\n")
    else:
        assert out.returncode == 0 and "[EchoServer.tcp]" in out.stdout, out.stderr


def test_public_tcp_bind_with_secret_file(folder):
    """tcp_bind = 0.0.0.0 (not loopback) serves with [defaults]' secret_file: a client that
    holds the secret calls, one without it is refused."""
    name, port = f"echo_serv_{os.getpid()}_secret", free_port()
    (folder / "echoserver.py").write_text(seed(SEED001_SERVER, name, port))
    secret = folder / "secret"
    secret.write_text("0123456789abcdef0123456789abcdef\n")
    secret.chmod(0o600)
    (folder / "service.ini").write_text(
        "[defaults]\nlog_dir = logs\ntcp_bind = 0.0.0.0\nsecret_file = secret\n\n"
        "[web monitor]\nport = %d\n\n[EchoServer]\nimport_from = echoserver\n" % free_port())
    sup = Supervised(folder, [name])
    try:
        sup.running("EchoServer.tcp", 1)
        code = textwrap.dedent("""
            import time
            import shmrpc
            from echoserver import EchoServer
            deadline = time.monotonic() + 20  # not waited for by the supervisor: no check
            while True:
                try:
                    p = shmrpc.connect(EchoServer, "tcp://127.0.0.1", secret_file="secret")
                    break
                except shmrpc.Unavailable:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            with p:
                assert p.send(EchoServer.echo_json, ["with"]) == "with"
            try:
                shmrpc.connect(EchoServer, "tcp://127.0.0.1").send(EchoServer.echo_json, ["x"])
            except shmrpc.Error as e:
                print(e.status_name)
            """)
        out = subprocess.run([sys.executable, "-c", code], cwd=folder, env=python_env(),
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "SHMRPC_EPERM", out.stdout  # refused: no secret
    finally:
        left = sup.stop()
    assert sup.proc.returncode == 0, sup.err
    assert not left, left


def test_docs_show_the_quick_example_tested_here():
    """docs/python.md's quick example (its ```py and ```ini blocks under "speedysvc's API")
    is seed 001's, as the tests above run it."""
    doc = open(os.path.join(os.environ.get("SHMRPC_DOCS", os.path.join(
        os.path.dirname(__file__), "../../docs")), "python.md")).read()
    section = doc.split("## speedysvc's API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:py|ini)\n# (\S+)\n(.*?)```", section, re.S)
    assert dict(blocks) == {"echoserver.py": SEED001_SERVER, "echoclient.py": SEED001_CLIENT,
                            "service.ini": SEED001_INI}


def test_send_spreads_lists_tuples_and_sequences(kinds):
    """send(method, args) takes a list, a tuple or another sequence of the arguments, and
    refuses what is no method or no sequence; a list changed by the call's own conversions
    (a __float__ that empties it) is read safely."""
    from kinds import Kinds

    class Sneaky(int):
        def __float__(self):
            held.clear()
            return 2.0
    with shmrpc.SHMClient(Kinds) as p:
        assert p.send(Kinds.greet, ["a", 2]) == "hello aa"
        assert p.send(Kinds.greet, ("b", 3)) == "hello bbb"
        assert p.send(Kinds.greet, iter(["c", 1])) == "hello c"
        assert p.send(Kinds.greet, ["d"] + [None]) == "hello d"
        held = [Sneaky(3), 1.5]
        assert p.send(Kinds.scale, held) == 3.0 and held == []
        with pytest.raises(TypeError, match="not a method of a ServerMethodsBase class"):
            p.send(len, [1])
        with pytest.raises(TypeError, match="unhashable"):
            p.send([], [1])
        with pytest.raises(TypeError, match="two arguments"):
            p.send(Kinds.greet)
        with pytest.raises(TypeError):
            p.send(Kinds.greet, 5)  # not a sequence


def test_send_refuses_a_str_bytes_or_dict_as_the_arguments(kinds):
    """send(Server.method, "x") is a mistake for ["x"]: a str (or bytes, or dict) is not
    spread into its characters (or keys), on the first send (bound in Python) and after
    (in C), for each encoding's path."""
    from kinds import Kinds
    with shmrpc.SHMClient(Kinds) as p:
        for method, good in ((Kinds.greet, ["x"]), (Kinds.centroid, [[{"x": 1.0, "y": 2.0}]]),
                             (Kinds.swap_pickle, ["a", "b"]), (Kinds.swap_marshal, ["a", "b"])):
            for bad in ("x", "ab", b"ab", {"a": 1}, bytearray(b"ab")):
                with pytest.raises(TypeError, match=r"args is a list \(or tuple\) of the "
                                   r"arguments, not a " + type(bad).__name__):
                    p.send(method, bad)
                p.send(method, good)  # bound now: the next bad one meets the C side
        assert p.send(Kinds.greet, ("y",)) == "hello y"


def test_generated_c_client_calls_python_class(tmp_path):
    """speedy_kinds.svc, from which speedy-client is generated, is what python3 -m
    shmrpc.svc prints for speedy_kinds.Speedy; that C client calls the class served from
    Python: hinted methods by their types, and the @pickle method's bytes passed through."""
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-m", "shmrpc.svc", "speedy_kinds:Speedy"], cwd=here,
                         env=dict(python_env(), PYTHONDONTWRITEBYTECODE="1"),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    with open(os.path.join(here, "speedy_kinds.svc")) as f:
        assert out.stdout == f.read()
    name = f"speedy_kinds_{os.getpid()}"
    (tmp_path / "serve.py").write_text(
        f"import sys; sys.path.insert(0, {here!r})\n"
        "import shmrpc, speedy_kinds\n"
        "shmrpc.serve_class(speedy_kinds.Speedy, sys.argv[1], workers=1)\n")
    env = dict(python_env(), PYTHONDONTWRITEBYTECODE="1")
    s = Server(sys.executable, f"shm://{name}", str(tmp_path / "serve.py"), env=env)
    try:
        out = subprocess.run([os.environ["SPEEDY_CLIENT"], f"shm://{name}"], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        import pickle
        assert out.stdout.splitlines() == [
            "add 42", "greet hello C", "centroid 2 1",
            f"twice {pickle.dumps(42, pickle.HIGHEST_PROTOCOL).hex()}"]
    finally:
        s.stop()
    assert not segments_of(name)


def test_send_of_another_class_method_is_refused(kinds):
    from kinds import Kinds
    from shmrpc import ServerMethodsBase, json_method

    class Other(ServerMethodsBase):
        port, name = 1, "other"

        @json_method
        def greet(self, who: str) -> str:
            pass

    with shmrpc.SHMClient(Kinds) as p:
        with pytest.raises(TypeError, match=r"send\(.*Other\.greet\): not a method of Kinds"):
            p.send(Other.greet, ["x"])
        assert p.send(Kinds.greet, ["x"]) == "hello x"
