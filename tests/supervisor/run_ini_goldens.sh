#!/bin/sh
# SPDX-License-Identifier: MIT
# run_ini_goldens.sh good|errors DIR BINDIR CMD [ARG...]: runs "CMD ARG... NAME.ini" in DIR
# for every DIR/NAME.ini, with BINDIR first in PATH (where exec= finds echo-server).
#   good:   exit status 0, nothing on stderr, stdout equal to DIR/NAME.out
#   errors: exit status 1, nothing on stdout, stderr equal to DIR/NAME.err
# Output names files by absolute path; DIR's becomes $DIR and BINDIR's $BIN, so the goldens
# hold wherever the tree and the build are. With UPDATE=1 in the environment, writes the
# goldens instead of comparing. (tests/idl/run_error_goldens.sh is the .svc counterpart.)
set -u
mode=$1 dir=$2 bin=$3
shift 3
case $mode in
good) ext=out want=0 ;;
errors) ext=err want=1 ;;
*)
    echo "usage: run_ini_goldens.sh good|errors DIR BINDIR CMD [ARG...]"
    exit 2
    ;;
esac
real_dir=$(cd "$dir" && pwd -P) || exit 1
real_bin=$(cd "$bin" && pwd -P) || exit 1
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

# Literal replacement (no regular expressions: paths may hold '.', '+' or '&').
neutral() {
    awk -v d="$real_dir" -v b="$real_bin" '
        function swap(s, from, to,    i, out) {
            out = ""
            while ((i = index(s, from)) > 0) {
                out = out substr(s, 1, i - 1) to
                s = substr(s, i + length(from))
            }
            return out s
        }
        { print swap(swap($0, d, "$DIR"), b, "$BIN") }'
}

fail=0
count=0
for ini in "$dir"/*.ini; do
    name=$(basename "$ini" .ini)
    count=$((count + 1))
    (cd "$dir" && PATH="$real_bin:$PATH" exec "$@" "$name.ini") >"$tmp/out" 2>"$tmp/err"
    status=$?
    if [ "$mode" = good ]; then
        neutral <"$tmp/out" >"$tmp/got"
        quiet=$tmp/err
    else
        neutral <"$tmp/err" >"$tmp/got"
        quiet=$tmp/out
    fi
    if [ "${UPDATE:-0}" = 1 ]; then
        cp "$tmp/got" "$dir/$name.$ext"
    fi
    if [ "$status" -ne "$want" ]; then
        echo "FAIL $name.ini: exit status $status, expected $want"
        cat "$tmp/err"
        fail=$((fail + 1))
    elif [ -s "$quiet" ]; then
        echo "FAIL $name.ini: unexpected output on $([ "$mode" = good ] && echo stderr || echo stdout)"
        cat "$quiet"
        fail=$((fail + 1))
    elif ! cmp -s "$dir/$name.$ext" "$tmp/got"; then
        echo "FAIL $name.ini: output differs from $name.$ext"
        diff -u "$dir/$name.$ext" "$tmp/got"
        fail=$((fail + 1))
    fi
done
if [ "$count" -eq 0 ]; then
    echo "no .ini files in $dir"
    exit 1
fi
echo "$((count - fail)) of $count $mode files passed"
[ "$fail" -eq 0 ]
