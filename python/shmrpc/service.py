# SPDX-License-Identifier: MIT
"""python3 -m shmrpc.service service.ini: runs the ServerMethodsBase classes of a
speedysvc service.ini under shmrpc-service (docs/python.md, "speedysvc's API").

The file is read with speedysvc's keys, each [ClassName] imported from its import_from
module (the ini's folder first on sys.path, as speedysvc imports), and written out as
shmrpc's service.ini: each class is an exec= service whose program is this module again
(--serve), serving shm://NAME with the workers the supervisor asks for; with tcp_bind a
second one, [ClassName.tcp], serves tcp://HOST:PORT. Then shmrpc-service runs that file,
so Python services get its supervision: scaling between min_proc_num and max_proc_num,
restarts, logs, shmrpcctl and the page.

    python3 -m shmrpc.service [--print] service.ini
      --print  prints the file shmrpc-service would run, and runs nothing
"""
import configparser
import ipaddress
import os
import re
import shutil
import socket
import sys
import textwrap

from . import _svcgen as _svc

# speedysvc's keys that shmrpc-service reads with the same meaning: written through.
SHARED = ("log_dir", "min_proc_num", "max_proc_num", "max_proc_mem_bytes", "wait_until_completed")
# shmrpc-service's own keys that apply to a Python service as to any exec= one.
OWN = ("scale_up_cpu_percent", "scale_up_window_s", "scale_down_cpu_percent",
       "scale_down_window_s", "restart_backoff_ms", "restart_backoff_max_ms",
       "crash_loop_restarts", "crash_loop_window_s", "log_max_bytes", "log_keep",
       "stop_timeout_s", "series_interval_s", "startup_timeout_s")
# Read here, and not written through.
MINE = ("tcp_bind", "bind_tcp", "secret_file", "force_insecure_serialisation",
        "tcp_allow_insecure_serialisation")
DEFAULTS_KEYS = SHARED + OWN + MINE
SERVICE_KEYS = ("import_from",) + DEFAULTS_KEYS
WEB_KEYS = ("host", "port", "secret_file")
BOOLS = {"1": True, "yes": True, "true": True, "on": True,
         "0": False, "no": False, "false": False, "off": False}


class IniError(Exception):
    pass


def read_ini(path):
    """[(section, line, {key: (value, line)})] in file order, read by configparser as
    speedysvc read its files (without interpolation: a % is itself); IniError with the
    file:line of what configparser refused."""
    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.readlines()
    except (OSError, UnicodeDecodeError) as e:
        raise IniError(f"{path}: error: cannot read: {e}") from None
    read = _Lines(lines)
    made = []  # configparser's dicts, in the order it made them

    class Located(dict):
        """configparser's dict_type: a section's keys (made when its header is read), each
        with the line it was first read at (a value continued on more lines keeps its
        first); the dicts configparser makes before reading have line 0."""
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.line, self.at = read.n, {}
            made.append(self)

        def __setitem__(self, key, value):
            self.at.setdefault(key, read.n)
            super().__setitem__(key, value)

    # No interpolation (a % is itself), and no section of configparser's own: a [DEFAULT]
    # is a section like any other, and so an error below.
    cp = configparser.ConfigParser(interpolation=None, strict=True, dict_type=Located,
                                   default_section="\0")

    def read_so_far():
        return dict(zip(cp.sections(), [d for d in made if d.line]))

    try:
        cp.read_file(read, source=name)
    except configparser.DuplicateSectionError as e:
        raise IniError(f"{name}:{e.lineno}: error: section [{e.section}] written twice "
                       f"(first at line {read_so_far()[e.section].line})") from None
    except configparser.DuplicateOptionError as e:
        raise IniError(f"{name}:{e.lineno}: error: key {e.option!r} written twice in "
                       f"[{e.section}] (first at line {read_so_far()[e.section].at[e.option]})"
                       ) from None
    except configparser.MissingSectionHeaderError as e:
        raise IniError(f"{name}:{e.lineno}: error: a [section] must come first, not: "
                       f"{e.line.strip()}") from None
    except configparser.ParsingError as e:
        raise IniError("\n".join(f"{name}:{n}: error: expected [section] or key = value: "
                                 f"{lines[n - 1].strip()}" for n, _ in e.errors)) from None
    return [(sec, d.line, {k: (v, d.at[k]) for k, v in d.items()})
            for sec, d in read_so_far().items()]


class _Lines:
    """A file's lines for configparser.read_file, counting them as it reads them."""

    def __init__(self, lines):
        self.lines, self.n = lines, 0

    def __iter__(self):
        for self.n, line in enumerate(self.lines, 1):
            yield line


def _bool(name, sec, key, value, line):
    b = BOOLS.get(value.lower())
    if b is None:
        raise IniError(f"{name}:{line}: error: {key} in [{sec}] is true or false, not {value!r}")
    return b


def _quote(word):
    """word as shmrpc-service splits an exec= line: in single quotes unless plain."""
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", word):
        return word
    return "'" + word.replace("'", "'\\''") + "'"


def translate(path, python=sys.executable, preload=None):
    """(shmrpc's service.ini text, the folder its log_dir names): path's services as
    shmrpc-service runs them. IniError with file:line when something is wrong."""
    path = os.path.abspath(path)
    folder, name = os.path.dirname(path), os.path.basename(path)
    sections = read_ini(path)
    errors = []
    defaults, web, services = {}, None, []
    for sec, line, keys in sections:
        if sec == "defaults":
            allowed, defaults = DEFAULTS_KEYS, keys
        elif sec == "web monitor":
            allowed, web = WEB_KEYS, keys
        else:
            allowed = SERVICE_KEYS
            services.append((sec, line, keys))
        for k, (v, n) in keys.items():
            if k not in allowed:
                hint = ""
                if k in ("host", "port", "service_name") and sec != "web monitor":
                    hint = (" (a service's port and name are its class's port and name "
                            "attributes; its host is tcp_bind)")
                elif k == "import_from" and sec == "defaults":
                    hint = " (import_from names a service's module, in its [ClassName])"
                errors.append(f"{name}:{n}: error: unknown key {k!r} in [{sec}]{hint}; "
                              f"known: {', '.join(allowed)}")
            elif not v:
                errors.append(f"{name}:{n}: error: {k} in [{sec}] has no value")
            elif k == "tcp_bind" and "bind_tcp" in keys:
                errors.append(f"{name}:{n}: error: [{sec}] has both tcp_bind and bind_tcp "
                              f"(line {keys['bind_tcp'][1]}): keep one")
    if "log_dir" not in defaults:
        errors.append(f"{name}: error: [defaults] needs log_dir (the folder of the logs)")
    if not services:
        errors.append(f"{name}: error: no services: a [ClassName] section with "
                      f"import_from = module")
    if errors:
        raise IniError("\n".join(errors))

    def get(keys, key, default=None):
        for d in (keys, defaults):
            if key in d:
                return d[key]
        return (default, None)

    log_dir = os.path.join(folder, defaults["log_dir"][0])
    out = [f"; Written by python3 -m shmrpc.service from {path}",
           "; at each start: edit that file, not this one.", "", "[defaults]"]

    def through(keys, sec, skip=()):
        for k, (v, n) in keys.items():
            if k in skip:
                continue
            if k == "log_dir" or (k == "secret_file" and sec == "defaults"):
                # (a service's secret_file is its --serve's: exec= sections take none)
                out.append(f"{k} = {v if v == 'none' else os.path.join(folder, v)}")
            elif k in SHARED or k in OWN:
                out.append(f"{k} = {v}")

    through(defaults, "defaults")
    if web is not None:
        out += ["", "[web monitor]"] + [
            f"{k} = {os.path.join(folder, v) if k == 'secret_file' and v != 'none' else v}"
            for k, (v, _) in web.items()]
    env = [] if not preload else ["env", f"LD_PRELOAD={preload}"]
    taken = {}  # ("name" or "port", value) -> (section, line)
    for sec, line, keys in services:
        if "import_from" not in keys:
            errors.append(f"{name}:{line}: error: [{sec}] needs import_from (the module "
                          f"that holds class {sec})")
            continue
        module, mline = keys["import_from"]
        try:
            cls = _svc.load_class(f"{module}:{sec}", path=folder)
            from .methods import ServerMethodsBase, insecure_methods
            if not (isinstance(cls, type) and issubclass(cls, ServerMethodsBase)):
                raise TypeError(f"{module}.{sec} is not a ServerMethodsBase class")
            from . import _svc_methods  # the front end's checks, before anything runs
            _svc_methods(f"{module}.{sec}", text=_svc.svc_text(cls))
        except Exception as e:  # the service's own module: whatever it raises
            errors.append(f"{name}:{mline}: error: [{sec}] import_from = {module}: "
                          f"{type(e).__name__}: {e}")
            continue
        bind, bline = get(keys, "tcp_bind")
        if bind is None:
            bind, bline = get(keys, "bind_tcp")
        # Two classes of one name (or, both over tcp://, one port): the second would find
        # the first's server there and fail at each restart, so say it now.
        tcp = bind is not None and bind.lower() != "none"
        for what, key in (("name", cls.name), ("port", cls.port if tcp else None)):
            if key is None:
                continue
            other = taken.setdefault((what, key), (sec, mline))
            if other[0] != sec:
                errors.append(f"{name}:{mline}: error: [{sec}] has the {what} {key!r} of "
                              f"[{other[0]}] (line {other[1]}): each class needs its own "
                              f"{what} ({cls.__qualname__}.{what})")
        v, n = get(keys, "force_insecure_serialisation", "false")
        force = _bool(name, sec, "force_insecure_serialisation", v, n)
        v, n = get(keys, "tcp_allow_insecure_serialisation", "false")
        force = force or _bool(name, sec, "tcp_allow_insecure_serialisation", v, n)
        v, n = get(keys, "min_proc_num", "1")
        workers = int(v) if v.isdigit() and 1 <= int(v) <= 64 else 1
        cmd = env + [python, "-m", "shmrpc.service", "--serve", f"{module}:{sec}", "--dir",
                     folder, "--workers", str(workers)]
        out += ["", f"[{sec}]", "exec = " + " ".join(map(_quote, cmd + [f"shm://{cls.name}"])),
                f"shm_name = {cls.name}"]
        through(keys, sec)
        if bind is None or bind.lower() == "none":
            continue
        bad = insecure_methods(cls)
        if bad and not force:
            errors.append(f"{name}:{bline}: error: [{sec}] serves tcp:// (tcp_bind = {bind}) "
                          f"and has {', '.join(bad)}: unpickling what a network client sends "
                          f"can run its code, so these are served over tcp:// only with "
                          f"force_insecure_serialisation = true")
            continue
        host = f"[{bind}]" if ":" in bind and not bind.startswith("[") else bind
        tcmd = cmd + (["--force-insecure-serialisation"] if force else [])
        secret, _ = get(keys, "secret_file")
        if secret is not None and secret != "none":
            tcmd += ["--secret-file", os.path.join(folder, secret)]
        elif _loopback(bind) is False:
            # The server would refuse to bind it at each start, in [sec.tcp]'s log only.
            errors.append(f"{name}:{bline}: error: [{sec}] serves tcp:// at {bind} (tcp_bind), "
                          f"which is not a loopback address: it needs secret_file (the "
                          f"shared secret its clients prove), in [defaults] or [{sec}]")
            continue
        out += ["", f"[{sec}.tcp]",
                "exec = " + " ".join(map(_quote, tcmd + [f"tcp://{host}:{cls.port}"])),
                f"tcp_port = {cls.port}"]
        # The supervisor's readiness check connects to 127.0.0.1:PORT without a secret
        # (an exec= program's secret is its own): one it cannot make is not waited for.
        unchecked = "--secret-file" in tcmd or bind not in (
            "127.0.0.1", "localhost", "0.0.0.0", "::", "[::]")
        through(keys, sec, skip=("wait_until_completed",) if unchecked else ())
        if unchecked:
            out.append("wait_until_completed = false")
    if errors:
        raise IniError("\n".join(errors))
    return "\n".join(out) + "\n", log_dir


def _loopback(host):
    """Whether every address host names is a loopback one, which a tcp:// server binds
    without a shared secret; None when it does not resolve (the server says so)."""
    try:
        found = socket.getaddrinfo(host.strip("[]"), None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    ips = [ipaddress.ip_address(a[4][0].partition("%")[0]) for a in found]
    return all((getattr(ip, "ipv4_mapped", None) or ip).is_loopback for ip in ips)


def find_supervisor():
    """shmrpc-service: $SHMRPC_SERVICE, else bin/shmrpc-service beside the module's
    installation (PREFIX/bin for PREFIX/lib/python3/dist-packages/shmrpc, build/bin for
    build/python/shmrpc), else on PATH."""
    env = os.environ.get("SHMRPC_SERVICE")
    if env:
        return env
    d = os.path.dirname(os.path.abspath(__file__))
    for _ in range(5):
        d = os.path.dirname(d)
        c = os.path.join(d, "bin", "shmrpc-service")
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    found = shutil.which("shmrpc-service")
    if found:
        return found
    raise IniError("cannot find shmrpc-service (beside this module's installation, or on "
                   "PATH): set SHMRPC_SERVICE to its path")


def serve_main(argv):
    """--serve MODULE:Class --dir DIR --workers N [--force-insecure-serialisation] ADDRESS:
    one service's program under shmrpc-service."""
    import argparse
    ap = argparse.ArgumentParser(prog="python3 -m shmrpc.service --serve")
    ap.add_argument("--serve", required=True, metavar="MODULE:Class")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--force-insecure-serialisation", action="store_true")
    ap.add_argument("--secret-file")
    ap.add_argument("address")
    a = ap.parse_args(argv)
    os.chdir(a.dir)
    from .methods import serve_class
    cls = _svc.load_class(a.serve, path=a.dir)
    serve_class(cls, a.address, workers=a.workers, secret_file=a.secret_file,
                force_insecure_serialisation=a.force_insecure_serialisation)
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--serve":
        return serve_main(argv)
    usage = "usage: " + textwrap.dedent(__doc__.strip().split("\n\n")[-1])
    if argv in (["-h"], ["--help"]):
        print(usage)
        return 0
    show = "--print" in argv
    args = [a for a in argv if a != "--print"]
    if len(args) != 1 or args[0].startswith("-"):
        print(usage, file=sys.stderr)
        return 2
    preload = os.environ.get("LD_PRELOAD")
    try:
        text, log_dir = translate(args[0], preload=preload)
        if show:
            sys.stdout.write(text)
            return 0
        supervisor = find_supervisor()
        stem = os.path.splitext(os.path.basename(args[0]))[0]
        out = os.path.join(log_dir, f"{stem}.shmrpc.ini")
        tmp = out + ".tmp"
        try:
            os.makedirs(log_dir, exist_ok=True)
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, out)
        except OSError as e:  # a log_dir under a file, in /proc, not ours...
            line = next(keys["log_dir"][1] for sec, _, keys in read_ini(args[0])
                        if sec == "defaults")
            raise IniError(f"{os.path.basename(args[0])}:{line}: error: log_dir = {log_dir}: "
                           f"cannot write {os.path.basename(out)} there: {e.strerror or e}"
                           ) from None
    except IniError as e:
        print(e, file=sys.stderr)
        return 1
    # The services import shmrpc as this process did; a preload is theirs (the exec line
    # has it), not the supervisor's.
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env["PYTHONPATH"] = os.pathsep.join([here] + [p for p in env.get("PYTHONPATH", "").split(
        os.pathsep) if p and p != here])
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(supervisor, [supervisor, "--foreground", out], env)


if __name__ == "__main__":
    sys.exit(main())
