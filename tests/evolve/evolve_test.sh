#!/bin/sh
# SPDX-License-Identifier: MIT
# Compatible evolution between running processes (issue 36): builds of shop_v1.svc and
# shop_v2.svc, in C (shop.c) and Python (py_shop.py), as clients and servers of each other
# over shm:// and tcp://; each client's lines must be what docs/svc-language.md promises.
# Every process has a timeout, every server is stopped, and nothing is left in /dev/shm.
# usage: evolve_test.sh SHOP_V1 SHOP_V2 PYTHON SRCDIR
set -u
V1=$1 V2=$2 PY=$3 SRC=$4
# python3 with the module: under the sanitizers with their runtime preloaded ($PY_PRELOAD),
# which only python3 lacks.
PYRUN=$PY
if [ -n "${PY_PRELOAD:-}" ]; then
    PYRUN="env LD_PRELOAD=$PY_PRELOAD ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 $PY"
fi
fails=0
server_pid=

stop_server() {
    [ -n "$server_pid" ] || return 0
    kill -TERM "$server_pid" 2>/dev/null
    i=0
    while kill -0 "$server_pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
    server_pid=
}
trap stop_server EXIT

# expect NAME OUTPUT LINE...: each LINE (a fixed string) must be in a line of OUTPUT.
expect() {
    name=$1 out=$2
    shift 2
    for want in "$@"; do
        if ! printf '%s\n' "$out" | grep -qF -- "$want"; then
            echo "FAIL $name: no line with '$want' in:"
            printf '%s\n' "$out" | sed 's/^/    /'
            fails=$((fails + 1))
        fi
    done
}

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# run NAME SERVER_CMD CLIENT_CMD ADDR: starts the server, runs the client, stops the server;
# the client's lines in $out.
run() {
    name=$1 scmd=$2 ccmd=$3 addr=$4
    $scmd "$addr" >/dev/null 2>&1 &
    server_pid=$!
    out=$(timeout 30 $ccmd "$addr" 2>&1)
    stop_server
    echo "== $name"
    printf '%s\n' "$out" | sed 's/^/    /'
}

for transport in shm tcp; do
    if [ $transport = shm ]; then addr="shm://evolve-$$"; else addr="tcp://127.0.0.1:$(free_port)"; fi

    run "$transport: C v1 client, C v2 server" "$V2 server" "$V1 client" "$addr"
    expect "$transport v1->v2" "$out" "compat: compatible, with these differences: 'get': struct Item: field 'note'" \
        "add 42" "get 7 item7" "get_json 7 item7" "sum 6" "sum_json 6" "paint 0 0" \
        "paint 1: invalid argument" "list_items 1 2 3"

    run "$transport: C v2 client, C v1 server" "$V1 server" "$V2 client" "$addr"
    expect "$transport v2->v1" "$out" "compat: compatible, with these differences: 'get': struct Item: field 'note'" \
        "add 42" "get 7 item7 note=none" "get_json 7 item7 note=none" "sum 6" "sum_json 6" \
        "paint 0 0" "paint 1 1" "list_items 1 2 3"

    run "$transport: C v2 client, C v2 server" "$V2 server" "$V2 client" "$addr"
    expect "$transport v2->v2" "$out" "compat: the same" "get 7 item7 note=v2 note" "sum 16" \
        "sum_json 16" "paint 1 2" "list_items 1 2 3"

    run "$transport: C v2 client, Python v1 server" "$PYRUN $SRC/py_shop.py server $SRC/shop_v1.svc" "$V2 client" "$addr"
    expect "$transport v2->py v1" "$out" "compat: compatible, with these differences:" \
        "get 7 item7 note=none" "get_json 7 item7 note=none" "sum 6" "sum_json 6" "paint 1 1" \
        "list_items 1 2 3"

    run "$transport: C v1 client, Python v2 server" "$PYRUN $SRC/py_shop.py server $SRC/shop_v2.svc" "$V1 client" "$addr"
    expect "$transport v1->py v2" "$out" "compat: compatible, with these differences:" \
        "get 7 item7" "get_json 7 item7" "sum 6" "sum_json 6" "paint 0 0" "paint 1: invalid argument" \
        "list_items 1 2 3"

    run "$transport: Python client, C v1 server" "$V1 server" "$PYRUN $SRC/py_shop.py client" "$addr"
    expect "$transport py->v1" "$out" "add 42" "get 7 item7 note=absent" "sum 6" "sum_json 6" \
        "paint red green" "list_items 1 2 3"

    run "$transport: Python client, C v2 server" "$V2 server" "$PYRUN $SRC/py_shop.py client" "$addr"
    expect "$transport py->v2" "$out" "add 42" "get 7 item7 note=v2 note" "sum 6" "sum_json 6" \
        "paint red blue" "list_items 1 2 3"
done

left=$(ls /dev/shm 2>/dev/null | grep -c "evolve-$$" || true)
if [ "$left" != 0 ]; then
    echo "FAIL: $left segments of shm://evolve-$$ left in /dev/shm"
    fails=$((fails + 1))
fi
[ $fails = 0 ] && echo "all pairs behave as compatible evolution promises"
exit $((fails != 0))
