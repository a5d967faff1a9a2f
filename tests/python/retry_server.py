# SPDX-License-Identifier: MIT
"""A Python server of tests/shm/retry.svc for test_client.py's retries (docs/retries.md):
    python3 retry_server.py SVC_FILE NOTES ADDRESS
Each call appends its method's name to the file NOTES; a call made while the file
NOTES.die exists removes it and ends its worker (os._exit) before it answers, as a worker
that dies mid-call."""
import os
import sys

import shmrpc


def handler(name, notes):
    def call(*args):
        with open(notes, "a") as f:
            f.write(name + "\n")
        try:
            os.remove(notes + ".die")
            os._exit(3)
        except FileNotFoundError:
            pass
        return args[0] + 1 if name != "hello" else args[0]
    return call


if __name__ == "__main__":
    svc, notes, address = sys.argv[1:4]
    shmrpc.serve(svc, {m: handler(m, notes) for m in ("get", "bump", "hello")}, address,
                 workers=1)
