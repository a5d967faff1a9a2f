# SPDX-License-Identifier: MIT
"""shmrpc.Dict: UltraDict's API (name, create, auto_unlink, recurse, lock, ...) over the
shared map (docs/map.md); docs/python.md, "Dict", says what each part means here.

Keys and values are stored serialized (pickle by default) in the one table every process
maps: there is no local copy to bring up to date, no stream and no full dump. The gets,
puts and the lock are C (dict.c, _DictCore); this file is what is natural in Python: the
options, nesting, the lock's UltraDict semantics and the rest of the dict interface."""
import atexit
import collections.abc
import json
import marshal
import os
import pickle
import pprint
import secrets
import threading
import time
import weakref

from ._shmrpc import _DICT_MARKER, Error, Map, Unavailable, _DictCore

__all__ = ["Dict"]

_PROTOCOL = 4  # pickle's protocol for keys and values (dict.c's PYSHM_PICKLE_PROTOCOL)
_KEEP = 64  # nested Dicts a Dict keeps open that nothing else holds
_SIMPLE_KEYS = (int, str, bytes, float, bool, type(None))

# Dicts this process created with auto_unlink: {name: (pid, register name or None)}, removed
# by the process that created them at its exit (not by a forked child, whose pid differs).
_to_unlink = {}
_to_unlink_lock = threading.Lock()

# The names of the Dicts this thread is making the repr of: a Dict that holds itself, or
# one that holds it (each read of a nested Dict may be a new handle), prints as {...}.
_in_repr = threading.local()


def _pickle_key(key):
    # A key's bytes must be the same for equal keys in every process. pickle memoizes
    # objects seen twice in one dump, so ("ab", "ab") pickled differently when both were
    # one object; a Pickler in fast mode memoizes nothing.
    if type(key) in _SIMPLE_KEYS:
        return pickle.dumps(key, _PROTOCOL)
    import io
    f = io.BytesIO()
    p = pickle.Pickler(f, _PROTOCOL)
    p.fast = True
    p.dump(key)
    return f.getvalue()


def _marshal_key(key):
    # marshal's versions 3 and 4 flag objects by their reference count and interning:
    # version 2 writes equal keys alike.
    return marshal.dumps(key, 2)


def _codecs(serializer):
    """(key dumps, value dumps, its second argument, loads) of a serializer."""
    if serializer is pickle:
        return _pickle_key, pickle.dumps, _PROTOCOL, pickle.loads
    if serializer is marshal:
        return _marshal_key, marshal.dumps, None, marshal.loads
    dumps, loads = getattr(serializer, "dumps", None), getattr(serializer, "loads", None)
    if not callable(dumps) or not callable(loads):
        raise TypeError("serializer must have callable dumps() and loads() (pickle, marshal, "
                        f"json, ...), not {serializer!r}")
    return dumps, dumps, None, loads


def _register_name(name):
    return f"{name}.register"


def _unlink_quietly(name):
    try:
        Map.unlink(name)
        return True
    except Error:
        return False


def _unlink_tree(name, register):
    """Removes the map called name, and when register is given, every nested Dict that
    register lists and the register itself."""
    found = _unlink_quietly(name)
    if register:
        try:
            with Map(register) as reg:
                children = [k.decode() for k, _ in reg.items()]
        except Error:
            children = []
        for child in children:
            _unlink_quietly(child)
        _unlink_quietly(register)
    return found


@atexit.register
def _unlink_at_exit():
    with _to_unlink_lock:
        mine = [(n, reg) for n, (pid, reg) in _to_unlink.items() if pid == os.getpid()]
        _to_unlink.clear()
    for name, reg in mine:
        _unlink_tree(name, reg)


def _like(cls, e, text):
    """An exception of cls saying text, with the library's status of e (a shmrpc.Error)."""
    new = cls(f"{text}: {e.message}")
    new.status, new.status_name, new.message = e.status, e.status_name, e.message
    new.may_have_run = False
    return new


class CannotAttachSharedMemory(Unavailable):
    """create=False, and no Dict of that name exists."""


class AlreadyExists(Error):
    """create=True, and a Dict of that name exists."""


class CannotAcquireLock(Exception):
    """The lock is held by another (block=False); .blocking_pid is its process."""

    def __init__(self, *args, blocking_pid=0, timestamp=None):
        super().__init__(*args)
        self.blocking_pid = blocking_pid
        self.timestamp = timestamp or time.monotonic()


class CannotAcquireLockTimeout(CannotAcquireLock):
    """The lock stayed held by a live process for the whole timeout."""

    def __init__(self, *args, time_passed=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.time_passed = time_passed


class ParameterMismatch(Exception):
    """An option that cannot apply to an existing Dict."""


class Lock:
    """UltraDict's lock of a Dict: the map's own shared lock (shmrpc_map_lock), which its
    writes take too, so `with d.lock:` makes a read-modify-write of several keys atomic
    against every process. Re-entrant for the thread that holds it."""

    def __init__(self, parent):
        self._d = parent
        self._depth = 0
        self._owner = None  # (pid, thread id) of the holder through this handle
        self._pending = threading.local()  # .opts: lock(...)'s for this thread's next with
        self.owner_died = False

    def acquire(self, block=True, timeout=None, steal=False, steal_after_timeout=False,
                sleep_time=None):
        """Takes the lock; True. block=False: CannotAcquireLock at once when another holds
        it; timeout (seconds, None: no limit): CannotAcquireLockTimeout when a live holder
        kept it that long. A holder that died is taken over, whatever steal and
        steal_after_timeout say (owner_died is then True); a live one is never taken from:
        with steal_after_timeout the wait goes on past the timeout (where UltraDict's takes
        the lock), as the map's own writes depend on the lock."""
        me = (os.getpid(), threading.get_ident())  # a forked child holds nothing of its parent's
        if self._depth and self._owner == me and self._d._lock_is_mine():
            self._depth += 1
            return True
        if self._depth and self._owner == me:
            raise RuntimeError(f"shmrpc.Dict '{self._d.name}': this thread's lock was taken "
                               "from it (it is no longer the holder)")
        if timeout is not None and timeout < 0:
            raise ValueError("timeout is seconds, 0 or more (None: no limit)")
        start = time.monotonic()
        wait = 0 if not block else timeout
        while True:
            rc = self._d._lock_acquire(wait)
            if rc in (0, 1):
                self.owner_died = rc == 1
                self._depth, self._owner = 1, me
                return True
            pid = self._d._lock_blocking_pid()
            if rc == 2:
                raise CannotAcquireLock(f"shmrpc.Dict '{self._d.name}': the lock is held by "
                                        f"process {pid}", blocking_pid=pid)
            if not steal_after_timeout:
                passed = time.monotonic() - start
                raise CannotAcquireLockTimeout(
                    f"shmrpc.Dict '{self._d.name}': the lock stayed held by process {pid} for "
                    f"{passed:.3f} s", blocking_pid=pid, time_passed=passed)
            wait = timeout if timeout else None

    def release(self, *args):
        """Lets go of one acquire; the lock is free after the release of the first."""
        if not self._depth or self._owner != (os.getpid(), threading.get_ident()):
            raise RuntimeError(f"shmrpc.Dict '{self._d.name}': release of a lock this thread "
                               "does not hold")
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            self._d._lock_release()
        return True

    def steal(self, from_pid=0):
        """UltraDict's: a lock whose holder died is taken over by the next acquire (the lock
        sees the death itself), and a live holder's is not taken; True when the lock is
        free or its holder is gone."""
        pid = self._d._lock_blocking_pid()
        if pid == 0:
            return True
        try:
            os.kill(pid, 0)
            return False
        except ProcessLookupError:
            return True
        except PermissionError:
            return False

    def get_remote_pid(self):
        """The process holding the lock, 0 when free (a snapshot)."""
        return self._d._lock_blocking_pid()

    def locked(self):
        return self._d._lock_blocking_pid() != 0

    def status(self):
        return {"held_here": self._depth, "blocking_pid": self.get_remote_pid(),
                "owner_died": self.owner_died}

    def print_status(self):
        pprint.pprint(self.status())

    def __call__(self, block=True, timeout=None, steal=False, steal_after_timeout=False,
                 sleep_time=None):
        self._pending.opts = dict(block=block, timeout=timeout, steal=steal,
                                  steal_after_timeout=steal_after_timeout, sleep_time=sleep_time)
        return self

    def __enter__(self):
        opts = getattr(self._pending, "opts", None) or {}
        self._pending.opts = None
        self.acquire(**opts)
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    def __repr__(self):
        return (f"<shmrpc.Dict.Lock of '{self._d.name}': held here {self._depth}, "
                f"blocking pid {self.get_remote_pid()}>")


class Dict(_DictCore, collections.abc.MutableMapping):
    """A dict shared by every process that opens it by name: UltraDict's
    Dict(*arg, name=None, create=None, buffer_size=10000, serializer=pickle,
    shared_lock=False, full_dump_size=None, auto_unlink=None, recurse=False,
    recurse_register=None, **kwargs), on shmrpc's shared map (docs/python.md, "Dict")."""

    class Exceptions:
        CannotAttachSharedMemory = CannotAttachSharedMemory
        AlreadyExists = AlreadyExists
        CannotAcquireLock = CannotAcquireLock
        CannotAcquireLockTimeout = CannotAcquireLockTimeout
        ParameterMismatch = ParameterMismatch
        AlreadyClosed = Unavailable

    # Older UltraDict spelled it so (its recover_from_stale_lock example).
    CannotAcquireLockException = CannotAcquireLock
    Lock = Lock

    def __init__(self, *arg, name=None, create=None, buffer_size=10000, serializer=pickle,
                 shared_lock=False, full_dump_size=None, auto_unlink=None, recurse=False,
                 recurse_register=None, **kwargs):
        if create is not None and create is not True and create is not False:
            raise ValueError(f"create is True, False or None, not {create!r}")
        if full_dump_size is not None and full_dump_size <= 0:
            raise ValueError(f"full_dump_size is a positive number of bytes, not {full_dump_size}")
        codecs = _codecs(serializer)  # refused before anything is created
        random_name = name is None
        if random_name and create is False:
            raise ValueError("create=False attaches to an existing Dict: give its name")
        while True:
            if random_name:
                name = f"psm_{secrets.token_hex(4)}"
            try:
                created = self._open(str(name), True if random_name else create,
                                     int(full_dump_size or 0))
                break
            except Unavailable as e:
                if create is False:
                    raise _like(CannotAttachSharedMemory, e, f"shmrpc.Dict '{name}' does not "
                                "exist (create=False)") from None
                raise
            except Error as e:
                if e.status_name != "SHMRPC_EBUSY":
                    raise
                if not random_name:
                    raise _like(AlreadyExists, e, f"shmrpc.Dict '{name}' exists already "
                                "(create=True)") from None
        self.name = str(name)
        self.serializer = serializer
        self.buffer_size = buffer_size
        self.full_dump_size = full_dump_size
        self.shared_lock = True  # the map's lock is always shared between processes
        self.created = created
        # A Dict nested in this one with recurse is registered here, for cleanup.
        if isinstance(recurse_register, Dict):
            recurse_register = recurse_register.name
        if recurse_register is None and recurse:
            recurse_register = _register_name(self.name)
        if recurse_register is None and not created:
            # An attacher follows its creator's recurse (UltraDict's), which made a register.
            try:
                Map(_register_name(self.name)).close()
                recurse_register = _register_name(self.name)
            except Error:
                pass
        self.recurse = recurse_register is not None
        self.recurse_register = recurse_register
        # The nested Dicts this handle opened, by name, while something holds them: the
        # last _KEEP used, or the user. One replaced is closed once let go of (each kept 3
        # mappings, and a process ran out of them after some 21,000 writes of a nested dict).
        self._children = weakref.WeakValueDictionary()
        self._recent = collections.OrderedDict()
        self.lock = Lock(self)
        limit = full_dump_size if full_dump_size else 1 << 28
        # pickle and marshal give back a key equal to it; another serializer's keys are
        # checked (json gives a tuple back as a list, which no dict can hold).
        self._setup(*codecs, self.recurse, int(limit), serializer not in (pickle, marshal))
        if self.recurse and recurse_register == _register_name(self.name):
            Map(recurse_register, create=True).close()
        self.auto_unlink = created if auto_unlink is None else bool(auto_unlink)
        if self.auto_unlink:
            with _to_unlink_lock:
                _to_unlink[self.name] = (os.getpid(), self._own_register())
        if arg or kwargs:
            self.update(*arg, **kwargs)

    # --- nesting (recurse=True), and Dicts stored as values ------------------------------

    def _store_special(self, key, value):
        # dict.c: value is a Dict, or a dict with recurse on. A dict becomes a Dict of its
        # own, registered for cleanup with its parent.
        if not isinstance(value, Dict):
            # Its name registered before it is made: a process killed in between leaves a
            # name to remove, never a map that nothing lists.
            with Map(self.recurse_register, create=True) as reg:
                while True:
                    name = f"psm_{secrets.token_hex(4)}"
                    reg[name.encode()] = b""
                    try:
                        child = Dict(name=name, create=True, serializer=self.serializer,
                                     auto_unlink=False, recurse=True,
                                     recurse_register=self.recurse_register)
                        break
                    except AlreadyExists:
                        del reg[name.encode()]  # another's: not ours to remove
            try:
                child.update(value)
            except BaseException:
                child.unlink()
                raise
            value = child
        self._keep(value)
        ref = {"name": value.name, "register": value.recurse_register}
        return _DICT_MARKER + json.dumps(ref).encode()

    def _load_special(self, raw):
        ref = json.loads(raw[len(_DICT_MARKER):])
        if ref["name"] == self.name:
            return self
        child = self._recent.get(ref["name"])
        if child is not None and not child._closed():
            return child
        child = self._children.get(ref["name"])
        if child is None or child._closed():
            child = Dict(name=ref["name"], create=False, serializer=self.serializer,
                         auto_unlink=False, recurse_register=ref["register"])
        self._keep(child)
        return child

    def _keep(self, child):
        self._children[child.name] = child
        self._recent[child.name] = child
        if len(self._recent) > _KEEP:
            self._recent.popitem(last=False)

    def _own_register(self):
        # The register this Dict removes with itself: its own, unless it is nested in
        # another's (a process that attached with recurse=True may have made it).
        if self.recurse_register not in (None, _register_name(self.name)):
            return None
        return _register_name(self.name)

    def _closed(self):
        try:
            self._lock_is_mine()
            return False
        except Unavailable:
            return True

    # --- the rest of dict's interface ----------------------------------------------------

    def __iter__(self):
        return iter(self._snapshot(0))

    def keys(self):
        return dict.fromkeys(self._snapshot(0)).keys()

    def values(self):
        return self.data.values()

    def items(self):
        return self.data.items()

    @property
    def data(self):
        """A local copy: a dict of one consistent snapshot, made anew at each access."""
        return dict(self._snapshot(2))

    def copy(self):
        return self.data

    def clear(self):
        self._clear()

    def setdefault(self, key, default=None):
        while True:
            raw = self._get_raw(key)
            if raw is not None:
                return self._decode(key, raw)
            if self._cas_raw(key, None, default):
                if self.recurse and isinstance(default, dict):
                    # What is stored is a Dict of its own: that, so that changes to it stay.
                    return self.get(key, default)
                return default

    def pop(self, key, *default):
        if len(default) > 1:
            raise TypeError(f"pop expected at most 2 arguments, got {1 + len(default)}")
        with self.lock:
            try:
                value = self[key]
            except KeyError:
                if default:
                    return default[0]
                raise
            del self[key]
            return value

    def popitem(self):
        with self.lock:
            for key in self._snapshot(0):
                value = self[key]
                del self[key]
                return key, value
        raise KeyError("popitem(): shmrpc.Dict is empty")

    def update_key(self, key, fn, *default):
        """Atomically replaces the value of key by fn(value), with no lock of the whole
        Dict: fn runs with no lock held, and the result is stored only if the key still
        holds what fn was given (the map's compare-and-swap), else fn runs again on the new
        value. An absent key is fn(default), or KeyError when no default is given. Returns
        the value stored. fn may run more than once: keep it free of side effects."""
        if len(default) > 1:
            raise TypeError("update_key(key, fn[, default])")
        while True:
            raw = self._get_raw(key)
            if raw is not None:
                old = self._decode(key, raw)
            elif default:
                old = default[0]
            else:
                raise KeyError(key)
            new = fn(old)
            if self._cas_raw(key, raw, new):
                return new

    def __eq__(self, other):
        if isinstance(other, collections.abc.Mapping):
            return self.data == dict(other.items())
        return NotImplemented

    __hash__ = None

    def __or__(self, other):
        if not isinstance(other, collections.abc.Mapping):
            return NotImplemented
        return self.data | dict(other)

    def __ior__(self, other):
        self.update(other)
        return self

    def __repr__(self):
        busy = _in_repr.__dict__.setdefault("names", set())
        if self.name in busy:
            return "{...}"
        busy.add(self.name)
        try:
            return repr(self.data)
        finally:
            busy.discard(self.name)

    def __reduce__(self):
        # multiprocessing's spawn, and any pickle: the name and options; the other side
        # attaches (never creates, never unlinks at its exit).
        ser = self.serializer
        if isinstance(ser, type(os)):
            ser = ser.__name__  # a module pickles by its name only
        return (_reattach, (self.name, ser, self.recurse_register))

    # --- UltraDict's management ----------------------------------------------------------

    def status(self):
        """The map's figures and this handle's options."""
        s = self._info()
        s.update(name=self.name, serializer=self.serializer, recurse=self.recurse,
                 recurse_register=self.recurse_register, auto_unlink=self.auto_unlink,
                 buffer_size=self.buffer_size, full_dump_size=self.full_dump_size,
                 shared_lock=True, lock=repr(self.lock))
        return s

    def print_status(self):
        pprint.pprint(self.status())

    def dump(self):
        """Nothing to dump: every process reads the one shared table."""

    def load(self, force=False):
        """Nothing to load: every process reads the one shared table."""

    def apply_update(self):
        """No updates to apply: every process reads the one shared table."""

    def close(self, unlink=False):
        """Unmaps this handle (its nested Dicts too), and returns the data as a dict. The
        map stays for the other processes (and for auto_unlink at exit). A lock this thread
        holds is freed; a thread waiting for it raises shmrpc.Unavailable."""
        try:
            # A value that does not load (a nested Dict removed, a class not importable
            # here) is raised, and the handle closed all the same.
            return {} if self._closed() else self.data
        finally:
            if unlink:
                self.unlink()
            for child in list(self._children.values()):
                child._close()
            self._children.clear()
            self._recent.clear()
            self._close()
            if self.lock._owner == (os.getpid(), threading.get_ident()):
                self.lock._depth, self.lock._owner = 0, None  # _close freed it

    def unlink(self):
        """Removes the Dict's name (and, for the Dict that made the register of recurse, every
        nested Dict and the register): new processes cannot attach; those attached keep
        what they mapped."""
        with _to_unlink_lock:
            _to_unlink.pop(self.name, None)
        _unlink_tree(self.name, self._own_register())

    @staticmethod
    def unlink_by_name(name, ignore_errors=False):
        """Removes the Dict called name (and what its recurse register lists)."""
        if not _unlink_tree(name, _register_name(name)) and not ignore_errors:
            try:
                Map.unlink(name)  # the library's own status and message
            except Error as e:
                raise _like(CannotAttachSharedMemory, e, f"shmrpc.Dict '{name}'") from None


def _reattach(name, serializer, recurse_register):
    if isinstance(serializer, str):
        import importlib
        serializer = importlib.import_module(serializer)
    return Dict(name=name, create=False, serializer=serializer, auto_unlink=False,
                recurse_register=recurse_register)
