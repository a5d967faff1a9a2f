# SPDX-License-Identifier: MIT
"""speedysvc's name for shmrpc's speedysvc API (docs/python.md, "speedysvc's API"), so that
`from speedysvc import ServerMethodsBase, json_method` and `python3 -m speedysvc.service
service.ini` read as speedysvc's README writes them. Everything here is shmrpc's."""
from shmrpc import (ClientMethodsBase, NetworkClient, ServerMethodsBase, SHMClient,  # noqa: F401
                    json_method, marshal_method, msgpack_method, pickle_method, raw_method)
from shmrpc.methods import connect_service as connect  # noqa: F401

__all__ = ["ServerMethodsBase", "ClientMethodsBase", "raw_method", "json_method",
           "msgpack_method", "pickle_method", "marshal_method", "SHMClient", "NetworkClient",
           "connect"]
