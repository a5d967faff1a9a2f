# SPDX-License-Identifier: MIT
"""A Python server for the tests: serves examples/echo/echo.svc, tests/dynamic/every.svc,
tests/python/any.svc, tests/stream/stream.svc or tests/stream/gather.svc with shmrpc.serve()
(docs/python.md, "Serving").
    python3 py_server.py echo|every|any|streamer|gather SVC_FILE WORKERS ADDRESS
echo's echo_json("boom") raises RuntimeError, echo_json("slow") answers after 1 s (a call
in flight when SIGTERM comes); every's handlers hand back what they are given. The call's
deadline (docs/deadlines.md): echo_json("deadline") answers the ms left of it ("none"
without one); echo_json("wait-cancel") waits, at most 20 s, for shmrpc.cancelled() to say
why its client stopped waiting; echo_json("relay ADDRESS") naps 400 ms, then calls add at
ADDRESS; each of the last two writes what it saw to the file $PY_SERVER_NOTES. Metadata
(docs/metadata.md): echo_json("meta") answers, as JSON, shmrpc.metadata() with "own": the
handler's shmrpc.traceparent(); echo_json("hop ADDRESS") calls echo_json("meta") at ADDRESS
and answers {"own": its traceparent, "b": that answer, "sent": the call.metadata its client's
interceptor saw}. With $PY_SERVER_GATE set, the interceptor Gate runs around every call."""
import json
import os
import sys
import threading
import time

import shmrpc


class Echo:
    def echo_raw(self, data):
        return data

    def echo_json(self, text):
        if text == "boom":
            raise RuntimeError("boom, as asked")
        if text == "slow":
            time.sleep(1)
        if text == "deadline":
            at = shmrpc.deadline()
            return "none" if at is None else str((at - time.monotonic()) * 1000)
        if text == "wait-cancel":
            end = time.monotonic() + 20
            while shmrpc.cancelled() is None and time.monotonic() < end:
                time.sleep(0.001)
            note(type(shmrpc.cancelled()).__name__)
        if text.startswith("big "):
            return "x" * int(text[len("big "):])
        if text == "meta":
            return json.dumps({"own": shmrpc.traceparent(), **shmrpc.metadata()})
        if text.startswith("hop "):
            sent = []
            with shmrpc.connect(text[len("hop "):]) as b:
                b.intercept(Sent(sent))
                inner = json.loads(b.echo_json("meta"))
            return json.dumps({"own": shmrpc.traceparent(), "b": inner, "sent": sent[0]})
        if text.startswith("relay "):
            time.sleep(0.4)
            try:
                shmrpc.connect(text[len("relay "):], timeout=30).add(1, 2)
                note("sent")
            except shmrpc.Error as e:
                note(f"{type(e).__name__}: {e}")
        return text

    def add(self, a, b):
        s = a + b
        if not -2**63 <= s < 2**63:
            raise ValueError(f"add: {a} + {b} overflows i64")
        return s

    def centroid(self, points):
        if not points:
            raise ValueError("centroid of no points")
        n = len(points)
        return {"x": sum(p["x"] for p in points) / n, "y": sum(p["y"] for p in points) / n,
                "label": "centroid"}


class Sent:
    """A client's interceptor that keeps the call.metadata each call sends."""

    def __init__(self, seen):
        self.seen = seen

    def before(self, call):
        self.seen.append(call.metadata)


class Gate:
    """An interceptor (with $PY_SERVER_GATE set): refuses centroid with a PermissionError,
    turns add's answer into SHMRPC_EBUSY (-13), and notes each hook it runs with the
    call.metadata it sees (as sorted JSON)."""

    def before(self, call):
        note(f"before {call.service}.{call.method} {json.dumps(call.metadata, sort_keys=True)}")
        if call.method == "centroid":
            raise PermissionError("no centroids today")

    def after(self, call, status):
        note(f"after {call.method} {status} {json.dumps(call.metadata, sort_keys=True)}")
        if call.method == "add":
            return -13


class Failed(Exception):
    """An exception that names the status its call fails with (docs/python.md)."""

    def __init__(self, msg, status):
        super().__init__(msg)
        self.status = status


class Streamer:
    """stream.svc's methods as generators, as the C handlers of tests/stream behave:
    ticks(n, fail_after, fail) raises Failed(status fail) at fail_after, or yields an item
    that does not encode there when fail is 1; n -1 returns a str and n -2 an int instead
    of items. forever and quiet note how they ended ("forever: Cancelled"), quiet waiting at
    most 20 s for shmrpc.cancelled(); forever's generators are kept, so that what ends them
    early is the server's close, not their collection."""

    def ticks(self, n, fail_after, fail):
        if n == -1:
            return "not items"
        if n == -2:
            return 7
        return self._ticks(n, fail_after, fail)

    def _ticks(self, n, fail_after, fail):
        for i in range(n):
            if i == fail_after and fail == 1:
                yield {"at": "not an i64", "note": "", "seen": []}
            elif i == fail_after:
                raise Failed(f"failed after {i}", fail)
            else:
                yield {"at": i, "note": f"tick {i}", "seen": [i * 10 + k for k in range(i % 4)]}

    def __init__(self):
        self.live = []  # forever's generators: only the server's close ends them early

    def forever(self, pad):
        g = self._forever()
        self.live.append(g)
        return g

    def _forever(self):
        i = 0
        try:
            while True:
                yield i
                i += 1
        finally:
            note(f"forever: {type(shmrpc.cancelled()).__name__}")

    def quiet(self):
        end = time.monotonic() + 20
        while shmrpc.cancelled() is None and time.monotonic() < end:
            time.sleep(0.001)
        note(f"quiet: {type(shmrpc.cancelled()).__name__}")
        return iter(())

    def deaf(self):
        return []

    def chunks(self, spec):
        n, size = map(int, spec.split())
        return [bytes([ord("a") + k]) * size for k in range(n)]

    def slow(self, n, every_ms):
        for i in range(n):
            time.sleep(every_ms / 1000)
            yield i

    def twice(self, x):
        return 2 * x


class Gatherer:
    """gather.svc's methods, as the C handlers of tests/stream/client_stream_test.c behave:
    sum stops at a part noted "enough" and raises Failed (EBUSY) at one noted "fail"; deaf
    reads nothing and notes what shmrpc.cancelled() said ("deaf: Cancelled", waiting at most
    20 s); concat stops at a part b"stop", and keeps its items' iterator at a part b"keep",
    which drain reads at a value -1 (and at -2 reads its own from another thread); doubled
    yields each value doubled as it reads it, returns at a value -1, and notes why, when it
    was cancelled (as shmrpc.cancelled() says: "doubled: Cancelled"); stuck reads and
    yields nothing until it is no longer wanted (waiting at most 20 s);
    drain notes that it began, then how many it read ("drain: 3") or the exception that ended
    its reading ("drain: Cancelled")."""

    def sum(self, parts):
        total = {"sum": 0, "count": 0, "notes": []}
        for p in parts:
            total["sum"] += p.n
            total["count"] += 1
            if p.note == "fail":
                raise Failed(f"told to fail at part {total['count']}", -13)
            if p.note == "enough":
                break
            if p.note:
                total["notes"].append(p.note)
        return total

    def deaf(self, values):
        end = time.monotonic() + 20
        while shmrpc.cancelled() is None and time.monotonic() < end:
            time.sleep(0.001)
        why = shmrpc.cancelled()
        note(f"deaf: {type(why).__name__}")
        if why is not None:  # the call's status, though its end may reach the client first
            raise why
        return 0

    def doubled(self, values):
        try:
            for v in values:
                if v == -1:
                    return
                yield 2 * v
        finally:  # a read that failed, or the generator closed at its yield
            if shmrpc.cancelled() is not None:
                note(f"doubled: {type(shmrpc.cancelled()).__name__}")

    def stuck(self, values):
        end = time.monotonic() + 20
        while shmrpc.cancelled() is None and time.monotonic() < end:
            time.sleep(0.001)
        if shmrpc.cancelled() is not None:
            raise shmrpc.cancelled()
        yield from ()

    def concat(self, parts):
        joined = []
        for p in parts:
            if p == b"stop":
                break
            if p == b"keep":  # for drain(-1), which reads it after this call
                self.kept = parts
            joined.append(p)
        return b"".join(joined)

    def drain(self, values):
        note("drain: began")
        n = 0
        try:
            for v in values:
                if v == -1:
                    try:
                        next(self.kept)
                    except ValueError as e:
                        note(f"kept: {e}")
                if v == -2:
                    t = threading.Thread(target=self._read_elsewhere, args=(values,))
                    t.start()
                    t.join()
                n += 1
        except shmrpc.Error as e:  # the stream cannot go on: why
            note(f"drain: {type(e).__name__}")
            raise
        note(f"drain: {n}")

    def _read_elsewhere(self, values):
        try:
            next(values)
        except RuntimeError as e:
            note(f"elsewhere: {e}")


def same(v):
    return v


def note(text):
    with open(os.environ["PY_SERVER_NOTES"], "a") as f:
        f.write(text + "\n")


EVERY = {name: same for name in ("pass_scalars", "pass_scalars_json", "pass_holder",
                                 "pass_holder_json", "pass_keys", "pass_keys_json", "pass_node",
                                 "pass_node_json", "pass_any", "pass_any_json")}
EVERY.update(pass_sign=lambda s: s, pass_map=lambda m: m,
             first=lambda a, b, c, d, e, f, g: a, fourth_json=lambda a, b, c, d, e, f, g: d,
             nothing=lambda: None, nothing_json=lambda: None, raw=lambda data: data)

# any.svc: values handed back, and the Python type of what came in.
DYN = dict(echo=same, echo_json=same, many=lambda vs, m: vs + [m], packet=lambda p: p,
           kind=lambda v: type(v).__name__)

if __name__ == "__main__":
    kind, svc, workers, address = sys.argv[1:5]
    handlers = {"echo": Echo(), "every": EVERY, "any": DYN, "streamer": Streamer(),
                "gather": Gatherer()}[kind]
    interceptors = [Gate()] if os.environ.get("PY_SERVER_GATE") else []
    shmrpc.serve(svc, handlers, address, workers=int(workers), interceptors=interceptors,
                 max_message_size=int(os.environ.get("PY_SERVER_MAX_MSG", "0")))
