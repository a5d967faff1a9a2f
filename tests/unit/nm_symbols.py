# SPDX-License-Identifier: MIT
"""The global symbols that object files define and use, read by one nm over all of them
(for layers_test.py and circles_test.py)."""
import re
import subprocess


def symbols(objs):
    """(defined, used): each a dict object -> set of symbol names."""
    out = subprocess.run(["nm", "-A", "-g"] + list(objs), check=True, capture_output=True,
                         text=True).stdout
    defined = {o: set() for o in objs}
    used = {o: set() for o in objs}
    for line in out.splitlines():
        m = re.match(r"^(.*?):[0-9a-fA-F]*\s+(\S)\s+(\S+)$", line)
        if not m or m.group(1) not in defined:
            continue
        obj, kind, name = m.groups()
        if kind in "Uw":  # undefined, weak undefined
            used[obj].add(name)
        elif kind != "v":  # v: a weak object left undefined
            defined[obj].add(name)
    return defined, used
