#!/bin/sh
# The runtime's calls run one way: server.c calls the transports (through the table in
# transport.c), and no transport calls server.c; a transport sees its server through
# dispatch.c. Fails naming each object file that uses a symbol server.c defines.
# Usage: layers_test.sh OBJECT... (the runtime's object files)
set -u
server=""
for o in "$@"; do
    case "$o" in */server.c.o | */server.c.obj) server=$o ;; esac
done
[ -n "$server" ] || { echo "layers_test: no server.c object among the arguments"; exit 2; }
defined=$(nm -g --defined-only "$server" | awk '{print $3}')
status=0
for o in "$@"; do
    case "$o" in
    */tcp.c.o | */tcp_server.c.o | */tcp_client.c.o | */inproc.c.o | */shm.c.o | */dispatch.c.o \
        | */transport.c.o | */crew.c.o | */stats.c.o) ;;
    *) continue ;;
    esac
    used=$(nm -u "$o" | awk '{print $2}' | grep -xF "$defined")
    if [ -n "$used" ]; then
        echo "$(basename "$o") calls server.c: $(echo $used)"
        status=1
    fi
done
[ $status -eq 0 ] && echo "no transport calls server.c"
exit $status
