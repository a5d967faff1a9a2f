# SPDX-License-Identifier: MIT
"""A speedysvc-style service whose .svc (speedy_kinds.svc, as python3 -m shmrpc.svc
speedy_kinds:Speedy prints it) a C client is generated from (speedy_client.c)."""
import dataclasses

from shmrpc import ServerMethodsBase, json_method, msgpack_method, pickle_method


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Speedy(ServerMethodsBase):
    port = 5555
    name = "speedy_kinds"

    @msgpack_method
    def add(self, a: int, b: int) -> int:
        return a + b

    @json_method
    def greet(self, who: str) -> str:
        return f"hello {who}"

    @msgpack_method
    def centroid(self, points: list[Point]) -> Point:
        n = len(points)
        return Point(sum(p.x for p in points) / n, sum(p.y for p in points) / n)

    @pickle_method
    def twice(self, v):
        return v * 2
