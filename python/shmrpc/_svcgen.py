# SPDX-License-Identifier: MIT
"""The .svc text of a ServerMethodsBase class (docs/python.md, "speedysvc's API"): the
method table shmrpc serves it with, which shmrpcgen compiles for C clients.

    python3 -m shmrpc.svc MODULE:Class     # prints it

A method's type hints give its signature: int i64, float f64, str string, bytes bytes,
bool bool, list[T] list<T>, dict[K, V] map<K, V> (K str, int or an Enum), Optional[T] and
T | None T?, a dataclass a struct, an Enum an enum, None as the result void. A parameter
or result without a hint (or typing.Any) is `any`, a dynamic value. @raw, @pickle and
@marshal methods take one bytes parameter and return bytes, whatever their hints say.
"""
import dataclasses
import enum
import importlib
import inspect
import re
import sys
import types
import typing

# The encodings of the decorators, as the .svc language spells them.
ENCODINGS = ("raw", "json", "msgpack", "pickle", "marshal")
# Those whose one bytes parameter and bytes result carry what Python serialises itself.
BYTES_SHAPED = ("raw", "pickle", "marshal")

_SCALARS = {bool: "bool", int: "i64", float: "f64", str: "string", bytes: "bytes"}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def methods_of(cls):
    """[(name, function, encoding)] of the decorated methods of cls, by name."""
    found = []
    for name in dir(cls):
        fn = getattr(cls, name, None)
        enc = getattr(fn, "_shmrpc_encoding", None)
        if enc is not None:
            found.append((name, fn, enc))
    return found


def params_of(cls, name, fn):
    """The parameters of fn after self, as inspect gives them; TypeError for a kind the
    method table has no place for (*args, **kwargs, keyword-only)."""
    ps = list(inspect.signature(fn).parameters.values())[1:]
    for p in ps:
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            raise TypeError(f"{cls.__name__}.{name}: parameter {p}: only positional "
                            f"parameters can be served (no *args, **kwargs or keyword-only)")
    return ps


def hints_of(fn):
    try:
        return typing.get_type_hints(fn)
    except Exception as e:  # a name in a string annotation that does not resolve
        raise TypeError(f"{fn.__qualname__}: its type hints do not resolve: {e}") from None


class _Writer:
    """Spells types in .svc, collecting the structs and enums they use."""

    def __init__(self, cls):
        self.cls = cls
        self.decls = {}  # name -> (python type, text)

    def decl_name(self, t, where):
        name = t.__name__
        if not _IDENT.match(name):
            raise TypeError(f"{where}: {t.__qualname__} cannot be named in a .svc "
                            f"(a name is [A-Za-z_][A-Za-z0-9_]*)")
        have = self.decls.get(name)
        if have is not None and have[0] is not t:
            raise TypeError(f"{where}: two types named {name} ({have[0].__module__} and "
                            f"{t.__module__}): a service's structs and enums need names of their own")
        return name, have is not None

    def type(self, t, where, result=False):
        if t is None or t is type(None):
            if result:
                return "void"
            raise TypeError(f"{where}: None is a result's type only (void); "
                            f"write Optional[T] for T or None")
        if t is typing.Any or t is object:
            return "any"
        if t in _SCALARS:
            return _SCALARS[t]
        origin, args = typing.get_origin(t), typing.get_args(t)
        if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
            rest = [a for a in args if a is not type(None)]
            if len(rest) != 1 or len(rest) == len(args):
                raise TypeError(f"{where}: {t} is a union; only Optional[T] (T | None) has a "
                                f".svc form")
            inner = self.type(rest[0], where)
            if inner.endswith("?"):
                raise TypeError(f"{where}: {t} is optional twice")
            if inner == "any":
                return "any"  # any holds null already
            return inner + "?"
        if t is list or origin is list:
            return f"list<{self.type(args[0], where) if args else 'any'}>"
        if t is dict or origin is dict:
            if not args:
                return "map<string,any>"
            k, v = args
            if k is str:
                key = "string"
            elif k is int:
                key = "i64"
            elif isinstance(k, type) and issubclass(k, enum.Enum):
                key = self.enum(k, where)
            else:
                raise TypeError(f"{where}: {t}: a map's key is str, int or an Enum")
            return f"map<{key},{self.type(v, where)}>"
        if isinstance(t, type) and issubclass(t, enum.Enum):
            return self.enum(t, where)
        if isinstance(t, type) and dataclasses.is_dataclass(t):
            return self.struct(t, where)
        raise TypeError(f"{where}: {t!r} has no .svc type (int, float, str, bytes, bool, list, "
                        f"dict, Optional, a dataclass, an Enum, or no hint for any)")

    def enum(self, t, where):
        name, known = self.decl_name(t, where)
        if known:
            return name
        members = list(t.__members__.items())
        if not members:
            raise TypeError(f"{where}: enum {name} has no members")
        ints = all(isinstance(m.value, int) and not isinstance(m.value, bool) and
                   -2**31 <= m.value < 2**31 for _, m in members)
        # Aliases (a second name of one value) are names of their own in a .svc.
        vals = [f"{n} = {m.value}" if ints else n for n, m in members]
        self.decls[name] = (t, f"enum {name} {{ {', '.join(vals)} }}")
        return name

    def struct(self, t, where):
        name, known = self.decl_name(t, where)
        if known:
            return name
        self.decls[name] = (t, None)  # a struct that holds itself meets its name
        hints = typing.get_type_hints(t)
        fields = [f"{self.type(hints.get(f.name, typing.Any), f'{where}: {name}.{f.name}')} "
                  f"{f.name};" for f in dataclasses.fields(t)]
        self.decls[name] = (t, f"struct {name} {{ {' '.join(fields)} }}")
        return name


def svc_text(cls):
    """The .svc text of the ServerMethodsBase class cls; TypeError or ValueError saying
    what has no .svc form."""
    where = f"{cls.__module__}.{cls.__qualname__}"
    if not _IDENT.match(cls.__name__):
        raise TypeError(f"{where}: the class's name cannot be a .svc service's name")
    port, name = getattr(cls, "port", None), getattr(cls, "name", None)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"{where}: port must be a number from 1 to 65535, not {port!r}")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise ValueError(f"{where}: name must be 1 to 64 letters, digits, '_', '-' or '.' "
                         f"(its shm:// name), not {name!r}")
    w = _Writer(cls)
    lines = []
    methods = methods_of(cls)
    if not methods:
        raise ValueError(f"{where}: no methods (decorate them with @raw_method, @json_method, "
                         f"@msgpack_method, @pickle_method or @marshal_method)")
    for mname, fn, enc in methods:
        at = f"{cls.__name__}.{mname}"
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn) or \
                inspect.iscoroutinefunction(fn):
            # Called, it would give a generator or coroutine object, which no encoding holds.
            kind = ("a coroutine function (async def)" if inspect.iscoroutinefunction(fn)
                    else "a generator function (it yields)")
            raise TypeError(f"{at}: {kind} cannot be served: a call gets one result (return "
                            f"a list, or asyncio.run the coroutine in the method)")
        ps = params_of(cls, mname, fn)
        if enc == "raw":
            if len(ps) != 1:
                raise TypeError(f"{at}: a @raw method takes one parameter (the bytes), "
                                f"not {len(ps)}")
            lines.append(f"    @raw bytes {mname}(bytes {ps[0].name});")
            continue
        if enc in BYTES_SHAPED:  # its arguments, whatever they are, pickled as one list
            lines.append(f"    @{enc} bytes {mname}(bytes data);")
            continue
        hints = hints_of(fn)
        args = ", ".join(f"{w.type(hints.get(p.name, typing.Any), f'{at}: parameter {p.name}')}"
                         f" {p.name}" for p in ps)
        result = w.type(hints.get("return", typing.Any), f"{at}: result", result=True)
        lines.append(f"    @{enc} {result} {mname}({args});")
    decls = [f"    {text}" for _, text in w.decls.values()]
    return "\n".join([f"// The methods of {where}, written by shmrpc.svc.",
                      f"service {cls.__name__} {{", f"    port {port};",
                      f'    name "{name}";', *([""] + decls if decls else []), "", *lines,
                      "}", ""])


def load_class(spec, path=None):
    """The class named by "MODULE:Class" (MODULE imported with path first on sys.path)."""
    module, sep, qual = spec.partition(":")
    if not sep or not module or not qual:
        raise ValueError(f"{spec!r}: expected MODULE:Class")
    if path is not None and path not in sys.path:
        sys.path.insert(0, path)
    obj = importlib.import_module(module)
    for part in qual.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{spec!r}: module {module} has no {qual}") from None
    return obj
