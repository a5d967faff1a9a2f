# SPDX-License-Identifier: MIT
"""python3 -m shmrpc.svc MODULE:Class: prints the .svc of a ServerMethodsBase class (its
method table, as shmrpc serves it), for shmrpcgen to write C clients from (docs/python.md,
"speedysvc's API"). The writing is shmrpc._svcgen's."""
import sys

from . import _svc_methods
from ._svcgen import load_class, svc_text


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: python3 -m shmrpc.svc MODULE:Class\n"
              "Prints the .svc of a ServerMethodsBase class (its method table), for shmrpcgen.",
              file=sys.stderr if len(argv) != 1 else sys.stdout)
        return 2 if len(argv) != 1 else 0
    try:
        cls = load_class(argv[0], path="")
        text = svc_text(cls)
        _svc_methods(f"{cls.__module__}.{cls.__qualname__}", text=text)  # the front end's checks
        sys.stdout.write(text)
    except (TypeError, ValueError, ImportError) as e:
        print(f"shmrpc.svc: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
