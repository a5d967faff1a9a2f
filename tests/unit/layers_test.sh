#!/bin/sh
# SPDX-License-Identifier: MIT
# The runtime's calls run one way: server.c and client.c call the transports (through the
# table in transport.c), and no transport calls them back; a transport sees its server
# through dispatch.c. Fails naming each transport object file that uses a symbol that
# server.c or client.c defines.
# Usage: layers_test.sh OBJECT... (the runtime's object files)
set -u
defined=""
for o in "$@"; do
    case "$o" in
    */server.c.o | */client.c.o) defined="$defined $(nm -g --defined-only "$o" | awk '{print $3}')" ;;
    esac
done
[ -n "$defined" ] || { echo "layers_test: no server.c or client.c object among the arguments"; exit 2; }
defined=$(echo $defined | tr ' ' '\n')
status=0
for o in "$@"; do
    case "$o" in
    */tcp.c.o | */tcp_server.c.o | */tcp_client.c.o | */inproc.c.o | */shm.c.o | */shm_server.c.o \
        | */shm_client.c.o | */shm_rdv.c.o | */dispatch.c.o \
        | */transport.c.o | */crew.c.o | */stats.c.o | */verify.c.o | */frame.c.o | */auth.c.o) ;;
    *) continue ;;
    esac
    used=$(nm -u "$o" | awk '{print $2}' | grep -xF "$defined")
    if [ -n "$used" ]; then
        echo "$(basename "$o") calls server.c or client.c: $(echo $used)"
        status=1
    fi
done
[ $status -eq 0 ] && echo "no transport calls server.c or client.c"
exit $status
