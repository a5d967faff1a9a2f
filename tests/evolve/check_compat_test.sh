#!/bin/sh
# SPDX-License-Identifier: MIT
# shmrpcgen --check-compat OLD NEW: the verdict the handshake gives, both ways, and the exit
# status that says it (0 both ways, 1 old clients cannot call the new server, 2 only new
# clients cannot call an old server, 3 a file that does not check out).
# usage: check_compat_test.sh SHMRPCGEN EVOLVE_DIR MISMATCH_DIR
set -u
GEN=$1 E=$2 M=$3
fails=0

# check WANT_STATUS OLD NEW LINE...: the status, and each LINE a fixed string in the output.
check() {
    want=$1 old=$2 new=$3
    shift 3
    out=$("$GEN" --check-compat "$old" "$new" 2>&1)
    got=$?
    if [ "$got" != "$want" ]; then
        echo "FAIL $old $new: exit $got, want $want"
        fails=$((fails + 1))
    fi
    for line in "$@"; do
        if ! printf '%s\n' "$out" | grep -qF -- "$line"; then
            echo "FAIL $old $new: no '$line'"
            fails=$((fails + 1))
        fi
    done
    printf '%s\n' "$out" | sed 's/^/    /'
}

check 0 "$E/shop_v1.svc" "$E/shop_v1.svc" \
    "clients of $E/shop_v1.svc, a server of $E/shop_v1.svc: the same"
check 0 "$E/shop_v1.svc" "$E/shop_v2.svc" \
    "a server of $E/shop_v2.svc: compatible, with these differences: 'get': struct Item: field 'note' (string?) only on the server" \
    "'paint': enum Color: 'blue' (2) is only on the server (a message that holds it fails on the client)" \
    "'sum': arguments: parameter 'start' (i64?) only on the server"
# A new method: old clients call the new server; new clients need a new server.
check 2 "$M/calc_v1.svc" "$M/calc_v2.svc" \
    "a server of $M/calc_v1.svc: incompatible: method table differs from the server's: 'last' is missing on the server"
check 1 "$M/calc_v2.svc" "$M/calc_v1.svc"
check 1 "$E/shop_v1.svc" "$E/shop_broken.svc" \
    "'add' has another signature, incompatible: arguments: parameter 1 is 'a' on the client and 'b' on the server (renamed, removed or reordered)" \
    "'get' has another signature, incompatible: struct Item.name is string on the client and f64 on the server" \
    "'get_json' has another signature, incompatible: the encoding differs" \
    "'paint' has another signature, incompatible: enum Color: 'green' is 1 on the client and 5 on the server" \
    "'sum' has another signature, incompatible: arguments: parameter 'start' (i64) is only on the server, and not optional"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
# b_second reaches the retyped A only through B, which was found alike while A was open.
check 1 "$E/cyclic_v1.svc" "$E/cyclic_v2.svc" \
    "'a_first' has another signature, incompatible: struct A.x is i64 on the client and f64 on the server" \
    "'b_second' has another signature, incompatible: struct B.a: struct A differs"
# 40 structs, each holding the next through a list and an optional, and a new optional
# parameter: as deep as the codecs carry (SHMRPC_MAX_DEPTH), so compatible.
for v in 1 2; do
    {
        echo 'service Deep { name "deep_serv"; port 5603;'
        i=0
        while [ $i -lt 39 ]; do
            echo "  struct S$i { i64 v; list<S$((i + 1))>? next; }"
            i=$((i + 1))
        done
        echo '  struct S39 { i64 v; }'
        if [ $v = 1 ]; then echo '  i64 f(S0 x);'; else echo '  i64 f(S0 x, i64? extra);'; fi
        echo '}'
    } >"$tmp/deep_v$v.svc"
done
check 0 "$tmp/deep_v1.svc" "$tmp/deep_v2.svc" \
    "compatible, with these differences: 'f': arguments: parameter 'extra' (i64?) only on the server"
# @idempotent added or removed (docs/retries.md): compatible both ways, and said.
sed -e 's/^    i64 add(/    @idempotent i64 add(/' -e 's/^    @json Item get_json(/    @json @idempotent Item get_json(/' \
    "$E/shop_v1.svc" >"$tmp/shop_idem.svc"
check 0 "$E/shop_v1.svc" "$tmp/shop_idem.svc" \
    "'add': @idempotent only on the server (a call that may have run is retried only when the server's table says @idempotent)" \
    "'get_json': @idempotent only on the server"
check 0 "$tmp/shop_idem.svc" "$E/shop_v1.svc" "'add': @idempotent only on the client"
check 3 "$E/shop_v1.svc" "$E/no_such.svc" "no_such.svc"
"$GEN" --check-compat "$E/shop_v1.svc" >/dev/null 2>&1
[ $? = 3 ] || { echo "FAIL: one file is not a use"; fails=$((fails + 1)); }
exit $((fails != 0))
