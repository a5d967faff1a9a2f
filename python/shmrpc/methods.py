# SPDX-License-Identifier: MIT
"""speedysvc's API on shmrpc (docs/python.md, "speedysvc's API"): a service is a class of
ServerMethodsBase with decorated methods, a client a ClientMethodsBase that sends
Server.method with its arguments through an SHMClient or a NetworkClient.

The class's method table is its .svc text (shmrpc.svc), served by the same machinery as
shmrpc.serve(); @pickle and @marshal methods are @raw-shaped methods whose bytes Python
serialises on both sides, and are refused over tcp:// unless force_insecure_serialisation.
"""
import dataclasses
import enum
import marshal
import os
import pickle
import typing

from . import Client, Mismatch, _serve, _svc_methods
from ._shmrpc import _Sender
from . import _svcgen as _svc

__all__ = ["ServerMethodsBase", "ClientMethodsBase", "raw_method", "json_method",
           "msgpack_method", "pickle_method", "marshal_method", "SHMClient", "NetworkClient",
           "connect_service", "serve_class"]

INSECURE = ("pickle", "marshal")


def _decorator(encoding):
    def decorate(fn):
        fn._shmrpc_encoding = encoding

        def as_rpc():
            """A method for a ClientMethodsBase class that sends this one
            (echo_raw = EchoServer.echo_raw.as_rpc())."""
            if encoding == "raw":
                def rpc(self, data):
                    return self.send(fn, data)
            else:
                def rpc(self, *args):
                    return self.send(fn, args)
            rpc.__name__, rpc.__qualname__, rpc.__doc__ = fn.__name__, fn.__name__, fn.__doc__
            return rpc

        fn.as_rpc = as_rpc
        return fn

    decorate.__name__ = f"{encoding}_method"
    decorate.__doc__ = (f"Serves the method as @{encoding} (docs/python.md, "
                        f"\"speedysvc's API\").")
    return decorate


raw_method = _decorator("raw")
json_method = _decorator("json")
msgpack_method = _decorator("msgpack")
pickle_method = _decorator("pickle")
marshal_method = _decorator("marshal")


class ServerMethodsBase:
    """The base of a service's class: port (its tcp:// port) and name (its shm:// name) as
    class attributes, and methods decorated with @raw_method, @json_method,
    @msgpack_method, @pickle_method or @marshal_method. One instance per service process
    is made before its workers are forked (what __init__ loads is shared copy on write)."""
    port = None
    name = None

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        for v in vars(cls).values():
            if getattr(v, "_shmrpc_encoding", None) and "_shmrpc_server" not in vars(v):
                v._shmrpc_server = cls  # so that send(Server.method) finds the server


# --- values that hints turn into dataclasses and enums ------------------------------------

def _needs_conv(t, seen=None):
    """Whether values of the hint t hold dataclasses or enums (which travel as dicts and
    names)."""
    if isinstance(t, type) and (issubclass(t, enum.Enum) or dataclasses.is_dataclass(t)):
        return True
    return any(_needs_conv(a) for a in typing.get_args(t) if a is not Ellipsis)


def _from_wire(t):
    """A function that turns a value of the hint t as shmrpc gives it (structs as dicts,
    enums by name) into t's (dataclasses, enum members); None when nothing changes."""
    if not _needs_conv(t):
        return None
    if isinstance(t, type) and issubclass(t, enum.Enum):
        return lambda v: t[v]
    if isinstance(t, type) and dataclasses.is_dataclass(t):
        hints = typing.get_type_hints(t)
        convs = [(f.name, _from_wire(hints.get(f.name, typing.Any))) for f in
                 dataclasses.fields(t)]
        return lambda v: t(**{n: (c(v.get(n)) if c and v.get(n) is not None else v.get(n))
                              for n, c in convs})
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is list:
        c = _from_wire(args[0])
        return lambda v: [c(x) for x in v]
    if origin is dict:
        kc, vc = _from_wire(args[0]), _from_wire(args[1])
        return lambda v: {(kc(k) if kc else k): (vc(x) if vc else x) for k, x in v.items()}
    rest = [a for a in args if a is not type(None)]  # Optional[T]
    c = _from_wire(rest[0])
    return lambda v: None if v is None else c(v)


def _to_wire(v):
    """v with its dataclasses as dicts and its enum members as names."""
    if isinstance(v, enum.Enum):
        return v.name
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _to_wire(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, (list, tuple)):
        return [_to_wire(x) for x in v]
    if isinstance(v, dict):
        return {_to_wire(k): _to_wire(x) for k, x in v.items()}
    return v


def _conversions(cls, name, fn):
    """([each parameter's from-wire function or None], whether the result goes to_wire,
    the result's from-wire function), or None when nothing changes."""
    ps = _svc.params_of(cls, name, fn)
    hints = _svc.hints_of(fn)
    convs = [_from_wire(hints.get(p.name, typing.Any)) for p in ps]
    ret = hints.get("return", typing.Any)
    if not any(convs) and not _needs_conv(ret):
        return None
    return convs, _needs_conv(ret), _from_wire(ret)


# --- serving ------------------------------------------------------------------------------

def _handler(instance, name, fn, enc):
    bound = getattr(instance, name)
    if enc == "pickle":
        loads, dumps, proto = pickle.loads, pickle.dumps, pickle.HIGHEST_PROTOCOL
        return lambda data: dumps(bound(*loads(data)), proto)
    if enc == "marshal":
        loads, dumps = marshal.loads, marshal.dumps
        return lambda data: dumps(bound(*loads(data)))
    conv = None if enc == "raw" else _conversions(type(instance), name, fn)
    if conv is None:
        return bound  # the C server calls the method itself: nothing in between
    convs, to_wire, _ = conv

    def handler(*args):
        r = bound(*[c(a) if c and a is not None else a for c, a in zip(convs, args)])
        return _to_wire(r) if to_wire else r
    return handler


def insecure_methods(cls):
    """The names of cls's @pickle and @marshal methods, with their encodings."""
    return [f"{n} (@{e})" for n, _, e in _svc.methods_of(cls) if e in INSECURE]


def serve_class(cls, address, *, workers=1, max_message_size=0,
                force_insecure_serialisation=False, secret_file=None):
    """Serves the methods of the ServerMethodsBase class cls at address ("shm://NAME",
    "shm://" for its name, "tcp://HOST:PORT", "tcp://HOST" for its port) until SIGTERM or
    SIGINT, as shmrpc.serve() serves a .svc file: one instance of cls made here, then
    workers processes forked. Over tcp://, @pickle and @marshal methods are refused (a
    ValueError naming them) unless force_insecure_serialisation is true; secret_file holds
    the shared secret tcp:// clients must prove (required for a host other than
    loopback)."""
    address = _address(cls, address)
    if address.startswith("tcp://") and not force_insecure_serialisation:
        bad = insecure_methods(cls)
        if bad:
            raise ValueError(
                f"{cls.__name__} would serve {', '.join(bad)} at {address}: unpickling or "
                f"unmarshalling what a network client sends can run its code, so these are "
                f"served over tcp:// only with force_insecure_serialisation = true "
                f"(service.ini) or force_insecure_serialisation=True")
    text = _svc.svc_text(cls)
    where = f"{cls.__module__}.{cls.__qualname__}"
    _svc_methods(where, text=text)  # the front end's errors before anything else
    instance = cls()
    handlers = {n: _handler(instance, n, fn, e) for n, fn, e in _svc.methods_of(cls)}
    _serve(where, handlers, address, workers, max_message_size, text=text,
           secret_file=None if secret_file is None else os.fspath(secret_file))


# --- calling ------------------------------------------------------------------------------

_tables = {}


def _signatures(cls):
    """{method: canonical signature} of cls's method table, as the server has it."""
    t = _tables.get(cls)
    if t is None:
        where = f"{cls.__module__}.{cls.__qualname__}"
        _, table = _svc_methods(where, text=_svc.svc_text(cls))
        t = _tables[cls] = {n: sig for n, _, sig in table}
    return t


def _address(cls, address):
    """address with cls's name or port filled in: "shm://" is shm://NAME, "tcp://HOST"
    tcp://HOST:PORT."""
    if address is None or address == "shm://":
        return f"shm://{cls.name}"
    if address.startswith("tcp://"):
        host = address[len("tcp://"):]
        has_port = ("]:" in host) if host.startswith("[") else (":" in host)
        if not has_port:
            return f"tcp://{host or '127.0.0.1'}:{cls.port}"
    return address


def _arguments(fn, args):
    """args, the arguments of fn as a sequence; a str, bytes or dict is refused rather than
    spread (send(Server.echo, "hi") would send "h" and "i")."""
    if isinstance(args, (str, bytes, bytearray, dict)):
        raise TypeError(f"send({fn.__qualname__}, args): args is a list (or tuple) of the "
                        f"arguments, not a {type(args).__name__}: send(method, [value]) "
                        f"for one")
    return args


class _Provider:
    """A connection to one service for ClientMethodsBase: send(Server.method, args)."""

    def __init__(self, server_methods, address, **opts):
        self.server_methods = server_methods
        self._spec = address
        # Unpickling what a tcp:// server sends can run its code, as on the server's side.
        self._force = bool(opts.pop("force_insecure_serialisation", False))
        self._opts = opts
        self._client = None
        self._star, self._calls = {}, {}
        self.send = _Sender(self._star, self._calls, self._bind_and_call)
        if server_methods is not None:
            self._connect(server_methods)

    def _connect(self, cls):
        self.server_methods = cls
        self._client = Client(_address(cls, self._spec), **self._opts)

    @property
    def address(self):
        return self._client.address if self._client else None

    def send(self, method, args):
        """Calls method (a decorated method of the server's class, or its name) with args:
        the bytes for a @raw method, else a list (or tuple) of its arguments. (Each
        instance's own send is a _Sender, which calls what is bound in C.)"""
        return self._bind(method)(args)

    def _bind_and_call(self, method, args):
        return self._bind(method)(args)

    def _bind(self, method):
        fn = method
        if isinstance(method, str):
            if self.server_methods is None:
                raise TypeError(f"send({method!r}): a method by name needs the server's class "
                                f"(SHMClient(Server) or NetworkClient(Server, ...))")
            fn = getattr(self.server_methods, method, None)
        enc = getattr(fn, "_shmrpc_encoding", None)
        if enc is None:
            raise TypeError(f"send({method!r}): not a method of a ServerMethodsBase class "
                            f"(decorated with @json_method or another)")
        # The provider's class first: a subclass's server serves what it inherits.
        cls = self.server_methods or vars(fn).get("_shmrpc_server")
        if cls is None:
            raise TypeError(f"send({fn.__qualname__}): its class is no ServerMethodsBase")
        name = fn.__name__
        want = _signatures(cls).get(name)
        if want is None or getattr(cls, name, None) is not fn:
            raise TypeError(f"send({fn.__qualname__}): not a method of {cls.__name__}, whose "
                            f"service this client calls")
        if self._client is None:
            self._connect(cls)
        if enc in INSECURE and not self._force and self._client.address.startswith("tcp://"):
            raise ValueError(f"send({fn.__qualname__}): a @{enc} method at "
                             f"{self._client.address}: unpickling or unmarshalling what a "
                             f"network server sends can run its code, so it is called over "
                             f"tcp:// only with force_insecure_serialisation=True (given to "
                             f"connect(), NetworkClient())")
        have = self._client.methods.get(name)
        if want != have:
            e = Mismatch(f"{name}: the service at {self._client.address} has "
                         + (f"'{have}'" if have else "no such method")
                         + f", {cls.__name__} has '{want}'")
            e.status_name, e.message, e.may_have_run = "SHMRPC_EMISMATCH", str(e), False
            raise e
        m = getattr(self._client, name)
        star = False
        if enc == "pickle":
            loads, dumps, proto = pickle.loads, pickle.dumps, pickle.HIGHEST_PROTOCOL
            call = lambda args: loads(m(dumps(list(_arguments(fn, args)), proto)))  # noqa: E731
        elif enc == "marshal":
            call = lambda args: marshal.loads(  # noqa: E731
                m(marshal.dumps(list(_arguments(fn, args)))))
        elif enc == "raw":
            call = m
        else:
            conv = _conversions(cls, name, fn)
            if conv is None:
                call, star = m, True
            else:
                rconv = conv[2]

                def call(args):
                    r = m(*[_to_wire(a) for a in _arguments(fn, args)])
                    return rconv(r) if rconv and r is not None else r
        if star:
            self._star[method] = call
            return lambda args: call(*_arguments(fn, args))
        self._calls[method] = call
        return call

    def close(self):
        if self._client is not None:
            self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<{type(self).__name__} {self.address or self._spec}>"


class SHMClient(_Provider):
    """A shared-memory connection to the service of server_methods (a ServerMethodsBase
    class) at shm://its name; options as shmrpc.connect's (timeout, ...)."""

    def __init__(self, server_methods, **opts):
        super().__init__(server_methods, "shm://", **opts)


class NetworkClient(_Provider):
    """A tcp:// connection to the service of server_methods at host:port (port: the
    class's). Also NetworkClient(host) as speedysvc's first README has it: the class is
    then the one of the first method sent. Options as shmrpc.connect's (timeout,
    secret_file, tls, ..., force_insecure_serialisation to call @pickle and @marshal
    methods)."""

    def __init__(self, server_methods=None, host="127.0.0.1", port=None, **opts):
        if isinstance(server_methods, str):
            server_methods, host = None, server_methods
        if host.startswith("tcp://"):
            host = host[len("tcp://"):]
        if ":" in host and not host.startswith("["):
            host = f"[{host}]" if host.count(":") > 1 else host  # IPv6, or host:port
        super().__init__(server_methods, f"tcp://{host}" + (f":{port}" if port else ""), **opts)


def connect_service(server_methods, address="shm://", **opts):
    """An SHMClient or NetworkClient of server_methods by address: "shm://" (its name),
    "shm://NAME", "tcp://HOST" (its port) or "tcp://HOST:PORT"."""
    if address.startswith("tcp://"):
        p = NetworkClient.__new__(NetworkClient)
    elif address.startswith("shm://"):
        p = SHMClient.__new__(SHMClient)
    else:
        raise ValueError(f"{address!r}: expected shm://, shm://NAME, tcp://HOST or "
                         f"tcp://HOST:PORT")
    _Provider.__init__(p, server_methods, address, **opts)
    return p


class ClientMethodsBase:
    """The base of a service's client class: its methods call
    self.send(Server.method, args) (args: the bytes for a @raw method, else a list of the
    arguments). client_provider is an SHMClient, a NetworkClient or what connect() gives."""

    def __init__(self, client_provider):
        self.client_provider = client_provider
        self.send = client_provider.send  # one lookup fewer per call

    def send(self, method, args):
        return self.client_provider.send(method, args)
