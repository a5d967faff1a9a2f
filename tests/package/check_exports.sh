#!/bin/sh
# SPDX-License-Identifier: MIT
# check_exports.sh LIBSHMRPC_SO INCLUDE_DIR: the shared library's soname is libshmrpc.so.N,
# and it exports the public API only: every defined dynamic symbol is a shmrpc_ name that
# a public header declares (the version node SHMRPC_N aside), and the API is there.
set -eu
lib=$1 inc=$2
soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
case "$soname" in
libshmrpc.so.[0-9]*) ;;
*) echo "soname is '$soname', not libshmrpc.so.N"; exit 1 ;;
esac
syms=$(nm -D --defined-only "$lib" | awk '{ sub(/@.*/, "", $3); print $3 }')
bad=0 n=0
for s in $syms; do
    case "$s" in
    SHMRPC_[0-9]*) continue ;;
    shmrpc_*) ;;
    *) echo "exported, not a shmrpc_ name: $s"; bad=1; continue ;;
    esac
    n=$((n + 1))
    grep -rqw -- "$s" "$inc" || { echo "exported, declared in no public header: $s"; bad=1; }
done
for s in shmrpc_client_new shmrpc_server_listen shmrpc_strerror shmrpc__buf_grow; do
    printf '%s\n' "$syms" | grep -qx "$s" || { echo "not exported: $s"; bad=1; }
done
[ $bad = 0 ] || exit 1
echo "$lib: soname $soname, $n symbols, all of the public API"
