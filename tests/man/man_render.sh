#!/bin/sh
# SPDX-License-Identifier: MIT
# man_render.sh DIR PAGE...: each built man page renders without a warning, both as man(1)
# renders it for a reader (80 columns) and under groff's strictest warnings.
set -eu
dir=$1
shift
fail=0
for page in "$@"; do
    f=$dir/$page
    if [ ! -s "$f" ]; then
        echo "FAIL: $f was not built"
        fail=1
        continue
    fi
    warn=$(groff -ww -man -z "$f" 2>&1 || echo "groff failed")
    if command -v man >/dev/null; then
        warn="$warn$(MANWIDTH=80 man --warnings -l "$f" 2>&1 >/dev/null || echo "man failed")"
    fi
    if [ -n "$warn" ]; then
        echo "FAIL: $page:"
        echo "$warn"
        fail=1
    else
        echo "ok: $page"
    fi
done
exit $fail
