#!/bin/sh
# SPDX-License-Identifier: MIT
# describe_test.sh CTL GEN EVERY_SERVER EVERY_SVC TABLE_SERVER: shmrpcctl list and describe
# (and health --json) against every-server (every.svc: every type of the language) over shm:// and tcp:// on
# loopback. describe's .svc is read back by shmrpcgen --check-compat, which must find it the
# same as every.svc both ways: every method's fingerprint, so every type and annotation, as
# the server has it. Then tables no .svc makes, served by table-server: names that would
# reach the terminal as escapes or forge lines, a struct described twice, a method given
# another's signature; each is refused with a message that shows the bytes escaped. Every
# wait is bounded; the servers are stopped (SIGTERM, then SIGKILL) and their segments
# removed, even on failure.
set -u
ctl=$1 gen=$2 server=$3 svc=$4 table_server=$5
tmp=$(mktemp -d) || exit 1
name=describe-$$
pids=""
cleanup() {
    for p in $pids; do kill -TERM "$p" 2>/dev/null; done
    for p in $pids; do
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "$p" 2>/dev/null
    done
    for n in $name $name-evil $name-twice $name-other; do "$ctl" clean "shm://$n" >/dev/null 2>&1; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail=0

# serve ADDRESS [SERVER ARGS...]: every-server (or SERVER ADDRESS ARGS) there, once health
# says it serves (10 s at most); 1 when it exited (a port taken).
serve() {
    if [ $# = 1 ]; then
        "$server" "$1" >"$tmp/server.out" 2>&1 &
    else
        "$2" "$1" "$3" "$4" >"$tmp/server.out" 2>&1 &
    fi
    pid=$!
    pids="$pids $pid"
    i=0
    until "$ctl" health --timeout 200 "$1" >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || return 1
        i=$((i + 1))
        [ $i -lt 100 ] || { echo "FAIL: every-server at $1 did not serve"; cat "$tmp/server.out"; exit 1; }
        sleep 0.1
    done
}

serve "shm://$name" || { echo "FAIL: every-server at shm://$name"; cat "$tmp/server.out"; exit 1; }
port=$((20000 + $$ % 20000)) tries=0
until serve "tcp://127.0.0.1:$port"; do
    tries=$((tries + 1))
    [ $tries -lt 10 ] || { echo "FAIL: no port for every-server"; exit 1; }
    port=$((20000 + (port + 997) % 20000))
done

# same WHAT FILE: shmrpcgen finds FILE the same service as every.svc, clients either way.
same() {
    if ! "$gen" --check-compat "$svc" "$2" >"$tmp/compat" 2>&1 ||
        [ "$(grep -c ': the same$' "$tmp/compat")" != 2 ]; then
        echo "FAIL: $1: not the same as every.svc:"
        cat "$tmp/compat" "$2"
        fail=1
    fi
}

# expect STATUS OUT ARGS...: shmrpcctl ARGS exits with STATUS and prints OUT (stdout, then
# stderr) exactly.
expect() {
    want=$1 out=$2
    shift 2
    "$ctl" "$@" >"$tmp/got" 2>&1
    st=$?
    if [ $st != "$want" ] || [ "$(cat "$tmp/got")" != "$out" ]; then
        echo "FAIL: shmrpcctl $*: status $st (want $want), printed:"
        cat "$tmp/got"
        echo "wanted:"
        echo "$out"
        fail=1
    fi
}

# Over tcp:// the address gives the port option; the name is said missing.
"$ctl" describe "tcp://127.0.0.1:$port" >"$tmp/tcp.svc" || { echo "FAIL: describe tcp://"; fail=1; }
grep -qx "    port $port;" "$tmp/tcp.svc" || { echo "FAIL: describe tcp:// has no port $port"; fail=1; }
sed 's|^    // name: not in the method table$|    name "x";|' "$tmp/tcp.svc" >"$tmp/tcp1.svc"
same "tcp://, with a name" "$tmp/tcp1.svc"

# Over shm:// it gives the name; the port is said missing, and shmrpcgen says so.
"$ctl" describe "shm://$name" >"$tmp/shm.svc" || { echo "FAIL: describe shm://"; fail=1; }
grep -qx "    name \"$name\";" "$tmp/shm.svc" || { echo "FAIL: describe shm:// has no name"; fail=1; }
"$gen" --check-compat "$svc" "$tmp/shm.svc" >"$tmp/compat" 2>&1 &&
    { echo "FAIL: a .svc without its port was taken"; fail=1; }
grep -q "service 'Every' has no port" "$tmp/compat" || { echo "FAIL: no port not said:"; cat "$tmp/compat"; fail=1; }
sed 's|^    // port: not in the method table$|    port 1;|' "$tmp/shm.svc" >"$tmp/shm1.svc"
same "shm://, with a port" "$tmp/shm1.svc"

expect 0 "first
fourth_json
nothing
nothing_json
pass_any
pass_any_json
pass_holder
pass_holder_json
pass_keys
pass_keys_json
pass_map
pass_node
pass_node_json
pass_scalars
pass_scalars_json
pass_sign
raw" list "shm://$name"

# One method, and the types it uses; one type, and those its fields use (a struct that
# holds itself once).
expect 0 "i8 first(i8 a, u16 b, Color c, f32 d, bool e, string? f, Sign? g);
enum Color { red = 0, green = 5, blue = 6 }
enum Sign { minus = -1, zero = 0, plus = 1 }" describe "shm://$name" first
expect 0 "@json Node pass_node_json(Node v);
struct Node { i64 value; list<Node> children; Node? next; }" describe "shm://$name" pass_node_json
expect 0 "@raw bytes raw(bytes data);" describe "shm://$name" raw
expect 0 "void nothing();" describe "shm://$name" nothing
expect 0 "struct Dynamic { any v; list<any> l; map<string, any> m; }" describe "shm://$name" Dynamic
expect 0 "enum Sign { minus = -1, zero = 0, plus = 1 }" describe "tcp://127.0.0.1:$port" Sign

# health --json (issue 38): the address and the state; why, when there is none.
expect 0 "{
  \"address\": \"shm://$name\",
  \"health\": \"serving\"
}" health --json "shm://$name"
expect 1 "shmrpcctl: shm://$name-none: no server at shm://$name-none
{
  \"address\": \"shm://$name-none\",
  \"health\": \"unreachable\",
  \"why\": \"no server at shm://$name-none\"
}" health --json "shm://$name-none"

# What is not there, and bad usage.
expect 2 "shmrpcctl: Every has no method or type 'nope' (see 'shmrpcctl list')" \
    describe "shm://$name" nope
expect 1 "shmrpcctl: shm://$name-none: unavailable: no server at shm://$name-none" \
    list "shm://$name-none"
expect 2 "shmrpcctl: describe: unrecognized option '--bogus' (see 'shmrpcctl describe --help')" \
    describe --bogus "shm://$name"
"$ctl" describe >/dev/null 2>"$tmp/err"
[ $? = 2 ] && grep -q '^usage: shmrpcctl describe' "$tmp/err" || { echo "FAIL: describe without an address"; fail=1; }
"$ctl" list a b >/dev/null 2>"$tmp/err"
[ $? = 2 ] && grep -q '^usage: shmrpcctl list' "$tmp/err" || { echo "FAIL: list of two addresses"; fail=1; }

# Tables no .svc makes. The escapes are kept from the terminal and from forging lines (a
# method's name with a line end is refused by the library's shm:// client already; a
# service's name is not): the service's name first, then a method's.
printf 'M\tadd\\e]0;pwned\\x07\tadd(i64 a,i64 b)->i64 @msgpack\nM\tb\tb()->void @msgpack\n' >"$tmp/evil.tab"
serve "shm://$name-evil" "$table_server" 'Evil\e[31m\nservice Forged' "$tmp/evil.tab" ||
    { echo "FAIL: table-server"; cat "$tmp/server.out"; exit 1; }
for cmd in list describe; do
    expect 1 "shmrpcctl: shm://$name-evil: the server's method table has a name that is no identifier: 'Evil\\x1b[31m\\x0aservice Forged'" \
        $cmd "shm://$name-evil"
done
kill -TERM $pid
serve "shm://$name-evil" "$table_server" Evil "$tmp/evil.tab" ||
    { echo "FAIL: table-server"; cat "$tmp/server.out"; exit 1; }
expect 1 "shmrpcctl: shm://$name-evil: the server's method table has a name that is no identifier: 'add\\x1b]0;pwned\\x07'" \
    list "shm://$name-evil"
# health said why it found none, before: its look for a draining server emptied the message.
kill -TERM $pid
printf 'M\tb\\nforged\tb()->void @msgpack\n' >"$tmp/line.tab"
"$table_server" "shm://$name-evil" Evil "$tmp/line.tab" >"$tmp/server.out" 2>&1 &
pids="$pids $!"
i=0 # until it serves (health cannot say so: it cannot read the table)
until "$ctl" health "shm://$name-evil" 2>&1 | grep -q malformed || [ $i -ge 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
expect 1 "shmrpcctl: shm://$name-evil: the server's method table is malformed
unreachable" health "shm://$name-evil"
printf 'M\ta\ta(struct P p)->void @msgpack\nM\tb\tb(struct P{string y;} p)->void @msgpack\nT\tstruct P{i64 x;}\n' >"$tmp/twice.tab"
serve "shm://$name-twice" "$table_server" Twice "$tmp/twice.tab" ||
    { echo "FAIL: table-server"; cat "$tmp/server.out"; exit 1; }
expect 1 "shmrpcctl: describe: the method table describes 'P' twice, differently" describe "shm://$name-twice"
expect 0 "void b(P p);
struct P { string y; }" describe "shm://$name-twice" b
printf 'M\tadd\tping()->void @msgpack\n' >"$tmp/other.tab"
serve "shm://$name-other" "$table_server" Other "$tmp/other.tab" ||
    { echo "FAIL: table-server"; cat "$tmp/server.out"; exit 1; }
expect 1 "shmrpcctl: add: the method table gives it the signature of 'ping'" describe "shm://$name-other"

# Streams (docs/streams.md): described as written; a streamed parameter takes no arguments
# (its items come from stdin: tests/stream/ctl_stream_test.sh).
kill -TERM $pid
printf 'M\tsum\tsum(stream<i64> values)->i64 @msgpack\nM\tticks\tticks(i64 n)->stream<struct Tick> @msgpack\nT\tstruct Tick{i64 at;}\n' >"$tmp/streams.tab"
serve "shm://$name-other" "$table_server" Ticker "$tmp/streams.tab" ||
    { echo "FAIL: table-server"; cat "$tmp/server.out"; exit 1; }
expect 0 "i64 sum(stream<i64> values);" describe "shm://$name-other" sum
expect 0 "stream<Tick> ticks(i64 n);
struct Tick { i64 at; }" describe "shm://$name-other" ticks
expect 2 "shmrpcctl: sum: arguments: sum's parameter 'values' streams: its open takes no arguments (its items are sent one by one)" \
    call "shm://$name-other" sum '[3]'

[ $fail = 0 ] && echo "describe_test: ok"
exit $fail
