#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Shop from Python (issue 36): "server SVC ADDR" serves shop_v1.svc or shop_v2.svc with
Python handlers until SIGTERM; "client ADDR" calls a server of either build and prints
lines as shop.c's client does (evolve_test.sh compares them)."""
import signal
import sys

import shmrpc


def serve(svc, addr):
    v2 = svc.endswith("shop_v2.svc")

    def get(id):
        item = {"id": id, "name": f"item{id}"}
        if v2:
            item["note"] = "py note"
        return item

    def list_items(n):
        items = [{"id": i + 1, "name": ""} for i in range(min(max(n, 0), 8))]
        for it in items if v2 else ():
            it["note"] = "n"
        return items

    handlers = {
        "add": lambda a, b: a + b,
        "list_items": list_items,
        "get": get,
        "get_json": get,
        "paint": (lambda c: "blue" if c == "green" else c) if v2 else (lambda c: c),
    }
    if v2:
        handlers["sum"] = handlers["sum_json"] = lambda xs, start: sum(xs) + (start or 0)
    else:
        handlers["sum"] = handlers["sum_json"] = lambda xs: sum(xs)
    signal.alarm(60)  # a watchdog, as shop.c's
    shmrpc.serve(svc, handlers, addr, workers=1)


def client(addr):
    with shmrpc.connect(addr, timeout=5.0) as c:
        # Python calls what the server's table says: the fields it reads are the server's.
        print("add", c.add(40, 2))
        for m in ("get", "get_json"):
            it = getattr(c, m)(7)
            note = it.get("note", "absent")
            print(m, it.id, it.name, f"note={note}")
        print("sum", c.sum([1, 2, 3]))
        print("sum_json", c.sum_json([1, 2, 3]))
        print("paint", c.paint("red"), c.paint("green"))
        print("list_items", *(it.id for it in c.list_items(3)))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "server":
        serve(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "client":
        client(sys.argv[2])
    else:
        sys.exit("usage: py_shop.py server SVC ADDR | client ADDR")
