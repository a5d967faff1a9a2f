# SPDX-License-Identifier: MIT
"""python3 -m speedysvc.service service.ini: shmrpc.service under speedysvc's name."""
import sys

from shmrpc.service import main

if __name__ == "__main__":
    sys.exit(main())
