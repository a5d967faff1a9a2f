#!/bin/sh
# SPDX-License-Identifier: MIT
# man_options.sh SRC_DIR SHMRPCGEN SHMRPC-SERVICE SHMRPCCTL SHMRPC-INI-CHECK: each program's
# man page (SRC_DIR/PROG.1.scd) defines in its OPTIONS section exactly the options that the
# program's --help lists (for shmrpcctl, with those of each command's --help), so that
# neither drifts from the other. An option is a word that begins with - or -- and a letter;
# a definition is an OPTIONS line that begins with *-.
set -eu
src=$1
shift
fail=0

# The options a --help text names.
help_opts() {
    grep -oE '(^|[^A-Za-z0-9_-])--?[A-Za-z][A-Za-z0-9-]*' | sed -E 's/^[^-]*//' | sort -u
}

# The options a page's OPTIONS section (up to the next "# " heading) defines.
page_opts() {
    awk '/^# /{on = ($0 == "# OPTIONS")} on && /^\*-/' "$1" |
        grep -oE '\*--?[A-Za-z][A-Za-z0-9-]*\*' | tr -d '*' | sort -u
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

for prog in "$@"; do
    name=$(basename "$prog")
    page=$src/$name.1.scd
    if [ ! -f "$page" ]; then
        echo "FAIL: $name has no man page ($page)"
        fail=1
        continue
    fi
    if ! "$prog" --help >"$tmp/help" 2>&1; then
        echo "FAIL: $name --help exits with a status other than 0"
        fail=1
        continue
    fi
    if [ "$name" = shmrpcctl ]; then
        # Each command of the list "  COMMAND ARGS  what it does" has a --help of its own.
        for cmd in $(sed -nE 's/^  ([a-z]+) .*/\1/p' "$tmp/help"); do
            timeout 10 "$prog" "$cmd" --help >>"$tmp/help" 2>&1 ||
                { echo "FAIL: $name $cmd --help exits with a status other than 0"; fail=1; }
        done
    fi
    help_opts <"$tmp/help" >"$tmp/want"
    page_opts "$page" >"$tmp/got"
    if [ ! -s "$tmp/want" ] || ! cmp -s "$tmp/want" "$tmp/got"; then
        echo "FAIL: $name: the options of --help (<) and of $page's OPTIONS (>) differ:"
        diff "$tmp/want" "$tmp/got" || true
        fail=1
    else
        echo "ok: $name: $(tr '\n' ' ' <"$tmp/want")"
    fi
done
exit $fail
