# SPDX-License-Identifier: MIT
"""The examples of docs/python.md, run against echo-server: the page's shm://echo_serv and
tcp://127.0.0.1:5555 become this run's own servers, its doc_example_ queues and maps this
run's own names."""
import os
import re

import pytest

from conftest import Server, free_port

DOC = os.path.join(os.environ.get("SHMRPC_DOCS", os.path.join(os.path.dirname(__file__), "../../docs")),
                   "python.md")


def examples(serving=False):
    """The page's examples; those that serve (shmrpc.serve) run as servers in
    test_serve.py, the others here."""
    with open(DOC) as f:
        found = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    return [e for e in found if ("shmrpc.serve(" in e) == serving]


def test_page_has_examples():
    assert len(examples()) >= 4


@pytest.mark.parametrize("n", range(len(examples())))
def test_example(n, shm_echo):
    tcp = Server(os.environ["ECHO_SERVER"], f"tcp://127.0.0.1:{free_port()}")
    try:
        code = examples()[n].replace("shm://echo_serv", shm_echo.address)
        code = code.replace("tcp://127.0.0.1:5555", tcp.address)
        code = code.replace('"doc_example_', f'"doc_example_{os.getpid()}_')
        exec(compile(code, f"{DOC} example {n + 1}", "exec"), {"__name__": "doc_example"})
    finally:
        tcp.stop()
