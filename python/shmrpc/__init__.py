# SPDX-License-Identifier: MIT
"""shmrpc: call any shmrpc service from Python, and serve one (docs/python.md).

    import shmrpc
    with shmrpc.connect("shm://echo_serv") as c:
        c.add(40, 2)          # 42
        c.add(a=40, b=2)      # by parameter name

The server's own method table drives the conversions (the library's dynamic codec): no
code is generated for Python. A client may be shared between threads (one call at a time
goes through it: a lock per client, taken without holding the GIL), and a forked child
connects again on its first call. shmrpc.serve(svc, handlers, address) serves the methods
of a .svc file from Python handlers in forked worker processes; ServerMethodsBase,
ClientMethodsBase and their decorators are speedysvc's API over the same (methods.py).
"""
import inspect as _inspect

from ._shmrpc import (Cancelled, Connection as _Connection, Error, HandlerError, Items, Map,
                      Mismatch, PeerDied, Queue, Stream, Timeout, Unavailable, _param_names, _serve,
                      _set_struct_factory, _svc_methods, cancelled, deadline, metadata,
                      set_traceparent, traceparent)
from ._shmrpc import (CONNECT_OR_CREATE, CONNECT_TO_EXISTING, CREATE_NEW_EXCLUSIVE,
                      CREATE_NEW_OVERWRITE, HybridLock, NoSuchSemaphore, SemaphoreExists)
from .dict import Dict

del dict  # the submodule's name, bound by its import: `dict` here is the builtin

__all__ = ["connect", "Client", "Struct", "Queue", "Map", "Error", "Timeout", "Unavailable",
           "Mismatch", "HandlerError", "PeerDied", "Cancelled", "serve", "ServerMethodsBase",
           "ClientMethodsBase", "raw_method", "json_method", "msgpack_method", "pickle_method",
           "marshal_method", "SHMClient", "NetworkClient", "serve_class", "deadline",
           "cancelled", "metadata", "traceparent", "set_traceparent", "Stream", "Items"]
__all__ += ["Dict", "HybridLock", "CONNECT_OR_CREATE", "CONNECT_TO_EXISTING",
            "CREATE_NEW_OVERWRITE", "CREATE_NEW_EXCLUSIVE", "NoSuchSemaphore", "SemaphoreExists"]


class Struct(dict):
    """A struct that came back from a call: its fields as attributes (p.x) and as a dict
    (p["x"], dict(p)); it may be passed back as an argument as it is. A field wins over a
    dict's method of its name (p.keys, p.items, p.get are the fields keys, items, get when
    the struct has them; dict.keys(p) is the method); no field begins with '_'."""
    __slots__ = ()
    _struct_name = "Struct"

    def __getattribute__(self, name):
        if not name.startswith("_"):  # getattr(p, "") is AttributeError, as anywhere
            try:
                return dict.__getitem__(self, name)
            except KeyError:
                pass
        return object.__getattribute__(self, name)

    def __getattr__(self, name):
        raise AttributeError(f"struct {type(self)._struct_name} has no field {name!r}")

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in dict.items(self))
        return f"{type(self)._struct_name}({fields})"


_struct_classes = {}


def _make_struct(name, fields):
    cls = _struct_classes.get(name)
    if cls is None:
        cls = type(name, (Struct,), {"__slots__": (), "_struct_name": name})
        _struct_classes[name] = cls
    return cls(fields)


_set_struct_factory(_make_struct)


def _method(conn, name, signature):
    # A C callable (vectorcall): no Python frame, tuple or dict per call (docs/python.md,
    # "Speed"); help() reads the __doc__ and __signature__ set here.
    method = conn._method(name)
    method.__doc__ = signature
    params = [_inspect.Parameter(p, _inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                 default=None if optional else _inspect.Parameter.empty)
              for p, optional in _param_names(signature)]
    # A required parameter after an optional one keeps no default in Python's terms.
    seen_default = False
    for i in reversed(range(len(params))):
        if params[i].default is _inspect.Parameter.empty:
            seen_default = True
        elif seen_default:
            params[i] = params[i].replace(default=_inspect.Parameter.empty)
    method.__signature__ = _inspect.Signature(params)
    return method


class Client:
    """A connection to one service; its methods are attributes (c.add(40, 2)).

    Made by shmrpc.connect(). Safe to share between threads: calls through one client
    take turns (open one client per thread for calls in parallel). close() or a with
    block ends the connection."""

    def __init__(self, address, *, timeout=5.0, max_message_size=0, secret_file=None,
                 **tls):
        self._conn = _Connection(address, timeout=timeout, max_message_size=max_message_size,
                                 secret_file=secret_file, **tls)
        self._cache = {}

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        cache = self.__dict__.get("_cache")
        if cache is None:
            raise AttributeError(name)
        m = cache.get(name)
        if m is None:
            # One method's signature, not the whole table's: what a miss costs is bounded
            # by the one method, however large the server's table.
            sig = self._conn._signature(name)
            if sig is None:
                have = ", ".join(self._conn._names())
                raise AttributeError(f"{self._conn.service} has no method {name!r} "
                                     f"(it has: {have})")
            m = cache[name] = _method(self._conn, name, sig)
        return m

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._conn._names()))

    @property
    def methods(self):
        """The server's method table: {name: canonical signature}."""
        return dict(self._conn.methods)

    @property
    def service(self):
        """The service's name in its .svc file."""
        return self._conn.service

    @property
    def address(self):
        return self._conn.address

    @property
    def closed(self):
        return self._conn.closed

    def call(self, method, *args, **kwargs):
        """Calls a method by its name (for names that are not Python identifiers)."""
        return self._conn._call(method, args, kwargs)

    def intercept(self, interceptor):
        """Runs interceptor.before(call) and interceptor.after(call, status) around every
        later call through this client, after those added before it (docs/python.md,
        "Interceptors"). call has .service and .method. A before that raises refuses the
        call, unsent, and the caller gets that exception; an after sees the status (0 or a
        negative SHMRPC_E... code), and may return another negative status or raise. A hook
        must not call through this same client."""
        self._conn._intercept(interceptor)

    @property
    def metadata(self):
        """The metadata every call of this client sends, a dict of str (docs/metadata.md).
        Assigning a dict replaces it all (ValueError, and nothing changed, for a key or value
        beyond the bounds); set_metadata changes one pair."""
        return self._conn._metadata()

    @metadata.setter
    def metadata(self, pairs):
        old = self._conn._metadata()
        self._conn._metadata_clear()
        try:
            for key, value in dict(pairs).items():
                self._conn._metadata_set(key, value)
        except BaseException:
            self._conn._metadata_clear()
            for key, value in old.items():
                self._conn._metadata_set(key, value)
            raise

    def set_metadata(self, key, value):
        """Sets key to value (None: removes it) for every later call; ValueError for a key
        or value the bounds refuse, with the library's message."""
        self._conn._metadata_set(key, value)

    @property
    def traceparent(self):
        """The W3C traceparent this client sends (metadata "traceparent"), or None. Set it to
        continue a trace (ValueError for an invalid one), None to stop sending one: then a
        call made inside a handler carries the handler's trace on."""
        return self._conn._metadata().get("traceparent")

    @traceparent.setter
    def traceparent(self, tp):
        self._conn._metadata_set("traceparent", tp)

    def cancel(self):
        """Cancels the call in flight through this client, which another thread makes: it
        raises shmrpc.Cancelled within about 20 ms, and its handler sees shmrpc.cancelled().
        Calls made after it are not cancelled. Safe from any thread."""
        self._conn.cancel()

    def close(self):
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self.closed else "open"
        return f"<shmrpc.Client {self.address} ({state})>"


def connect(address, *args, timeout=5.0, max_message_size=0, secret_file=None, tls=False,
            tls_ca=None, tls_cert=None, tls_key=None, tls_server_name=None, tls_verify=None,
            force_insecure_serialisation=False):
    """Connects to the service at address ("shm://NAME" or "tcp://HOST:PORT").

    connect(Server, "shm://" | "tcp://HOST" | "tcp://HOST:PORT") is speedysvc's: Server a
    ServerMethodsBase class, the result an SHMClient or NetworkClient for ClientMethodsBase.

    timeout: each call's deadline in seconds (None: no limit); max_message_size: the
    largest request or response in bytes (0: the library's default, 64 MiB);
    secret_file: a file holding the tcp:// shared secret. tls: TLS 1.3 over tcp://, which
    any of the others implies: tls_ca the CAs the server's certificate must chain to (else
    the system's), tls_cert and tls_key a client certificate (mutual TLS),
    tls_server_name the name the certificate must carry (else the address's host),
    tls_verify True or False to check the certificate or not (None: checked unless the
    address is loopback and no tls_ca is given). Raises Unavailable when nobody serves
    address, Mismatch for a server of another version. force_insecure_serialisation
    (connect(Server, "tcp://...") only): call the class's @pickle and @marshal methods
    over tcp://, unpickling what the server sends."""
    if isinstance(address, type):
        return connect_service(address, *args, timeout=timeout,
                               max_message_size=max_message_size, secret_file=secret_file,
                               tls=tls, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key,
                               tls_server_name=tls_server_name, tls_verify=tls_verify,
                               force_insecure_serialisation=force_insecure_serialisation)
    if force_insecure_serialisation:
        raise TypeError("connect(address, force_insecure_serialisation=...): only a "
                        "ServerMethodsBase class's client has @pickle or @marshal methods "
                        "(connect(Server, address, ...))")
    if args:
        raise TypeError("connect(address): one address (connect(Server, address) takes a "
                        "ServerMethodsBase class first)")
    return Client(address, timeout=timeout, max_message_size=max_message_size,
                  secret_file=secret_file, tls=tls, tls_ca=tls_ca, tls_cert=tls_cert,
                  tls_key=tls_key, tls_server_name=tls_server_name, tls_verify=tls_verify)


def _handler_problems(svc, table, handlers):
    """What keeps handlers from serving the methods of table: [] when nothing does."""
    by_dict = isinstance(handlers, dict)
    problems, found = [], {}
    for name, params, _signature in table:
        h = handlers.get(name) if by_dict else getattr(handlers, name, None)
        if h is None:
            problems.append(f"no handler for {name}({', '.join(params)})")
            continue
        if not callable(h):
            problems.append(f"the handler of {name} is not callable ({type(h).__name__})")
            continue
        try:
            sig = _inspect.signature(h)
        except (TypeError, ValueError):
            found[name] = h  # a builtin without a signature: taken as it is
            continue
        kinds = [p.kind for p in sig.parameters.values()]
        if _inspect.Parameter.VAR_POSITIONAL not in kinds:
            names = [p.name for p in sig.parameters.values()
                     if p.kind in (_inspect.Parameter.POSITIONAL_ONLY,
                                   _inspect.Parameter.POSITIONAL_OR_KEYWORD)]
            if names != list(params):
                problems.append(f"the handler of {name} takes ({', '.join(names)}); "
                                f"{name} has ({', '.join(params)})")
                continue
        found[name] = h
    if by_dict:
        known = {name for name, _, _ in table}
        for extra in sorted(set(handlers) - known, key=str):
            problems.append(f"{extra!r} is no method of {svc}")
    return problems, found


def serve(svc, handlers, address, *, workers=1, max_message_size=0, interceptors=()):
    """Serves the methods of the .svc file svc with Python handlers at address
    ("shm://NAME" or "tcp://HOST:PORT") until SIGTERM or SIGINT (docs/python.md,
    "Serving").

    handlers: a dict {method name: callable} or an object with a method per .svc method;
    each takes the method's parameters by their names, in order. Checked before anything
    is served: a missing, extra or mismatched handler raises TypeError listing them all.
    workers: processes forked to run the handlers (data loaded before serve() is shared
    copy on write; each has its own GIL); 0 serves in this process. An exception in a
    handler fails the call with its message ("ValueError: ..."): a ValueError as an
    invalid argument (status EINVAL), another as SHMRPC_EHANDLER, or the status its
    .status attribute names.
    interceptors: objects with a before(call) and/or an after(call, status) method that run
    around every call, in order (docs/python.md, "Interceptors"); a before that raises
    refuses the call (SHMRPC_EPERM unless the exception says otherwise)."""
    service, table = _svc_methods(str(svc))
    problems, found = _handler_problems(service, table, handlers)
    if problems:
        raise TypeError(f"handlers for {service} ({svc}) do not match: " + "; ".join(problems))
    _serve(str(svc), found, address, workers, max_message_size,
           interceptors=tuple(interceptors))


from .methods import (ClientMethodsBase, NetworkClient, ServerMethodsBase,  # noqa: E402
                      SHMClient, connect_service, json_method, marshal_method, msgpack_method,
                      pickle_method, raw_method, serve_class)
