#!/bin/sh
# SPDX-License-Identifier: MIT
# options_test.sh SHMRPCGEN SERVICE INI_CHECK CTL SVC: every program reads its options with
# getopt_long (issue 15): options before and after the arguments, --opt=value, -oDIR, --
# before an argument that begins with '-', --help (usage on stdout) and --version with
# status 0, and bad usage on stderr with status 2. Each run is bounded by timeout(1).
set -u
gen=$1 service=$2 ini_check=$3 ctl=$4 svc=$5
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0

# expect STATUS WHERE TEXT CMD...: CMD, run in $tmp, exits with STATUS and TEXT is in WHERE
# (out or err; "" skips that check).
expect() {
    want=$1 where=$2 text=$3
    shift 3
    (cd "$tmp" && exec timeout -k 5 20 "$@") >"$tmp/out" 2>"$tmp/err" </dev/null
    status=$?
    if [ "$status" -ne "$want" ]; then
        echo "FAIL $*: exit status $status, expected $want"
        cat "$tmp/out" "$tmp/err"
        fail=$((fail + 1))
    elif [ -n "$text" ] && ! grep -qF -- "$text" "$tmp/$where"; then
        echo "FAIL $*: std$where lacks: $text"
        cat "$tmp/out" "$tmp/err"
        fail=$((fail + 1))
    else
        echo "ok: $*"
    fi
}

# every program: --help, --version, a bad option, no arguments
for p in "$gen" "$service" "$ini_check" "$ctl"; do
    name=$(basename "$p")
    expect 0 out "usage: $name" "$p" --help
    expect 0 out "usage: $name" "$p" -h
    expect 0 out "$name " "$p" --version
    # a bad option: one line that says so and points at the usage (issue 38)
    expect 2 err "$name: unrecognized option '--no-such-option' (see '$name --help')" \
        "$p" --no-such-option
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || { echo "FAIL $name --no-such-option: not one line"; fail=$((fail + 1)); }
    expect 2 err "usage: $name" "$p"
done

# shmrpcgen: -oDIR, --out-dir=DIR, --depfile=F, options after the file, --
stem=$(basename "$svc" .svc)
cp "$svc" "$tmp/-dash.svc"
expect 0 "" "" "$gen" -o"$tmp/a" "$svc"
[ -s "$tmp/a/$stem.h" ] || { echo "FAIL: -oDIR wrote no $stem.h"; fail=$((fail + 1)); }
expect 0 "" "" "$gen" "$svc" --out-dir="$tmp/b" --depfile="$tmp/b.d"
[ -s "$tmp/b/$stem.c" ] || { echo "FAIL: --out-dir=DIR wrote no $stem.c"; fail=$((fail + 1)); }
grep -qF "$svc" "$tmp/b.d" 2>/dev/null || { echo "FAIL: --depfile=F"; fail=$((fail + 1)); }
expect 0 "" "" "$gen" -o c -- -dash.svc
[ -s "$tmp/c/-dash.h" ] || { echo "FAIL: -- -dash.svc wrote no -dash.h"; fail=$((fail + 1)); }
expect 2 err "one .svc file at a time" "$gen" "$svc" "$svc"
expect 2 err "shmrpcgen: option '-o' requires an argument (see 'shmrpcgen --help')" "$gen" "$svc" -o
expect 2 err "shmrpcgen: unrecognized option '-x' (see 'shmrpcgen --help')" "$gen" -x "$svc"
expect 2 err "shmrpcgen: unrecognized option '-x' (see 'shmrpcgen --help')" "$gen" -xo d "$svc"
expect 2 err "shmrpcctl: call: unrecognized option '-x' (see 'shmrpcctl call --help')" "$ctl" call -xq a b

# shmrpc-ini-check: --cpus=N, --cpus N after the file, --
cat >"$tmp/ok.ini" <<INI
[defaults]
log_dir = logs
[s]
exec = /bin/sleep 60
wait_until_completed = false
INI
expect 0 out "max_proc_num = 3" "$ini_check" --cpus=3 ok.ini
expect 0 out "max_proc_num = 5" "$ini_check" ok.ini --cpus 5
expect 0 out "[s]" "$ini_check" -- ok.ini
expect 2 err "--cpus takes 1 to 1024" "$ini_check" --cpus=0 ok.ini
expect 2 err "shmrpc-ini-check: option '--cpus' requires an argument" "$ini_check" ok.ini --cpus
# --quiet: nothing for a correct file (0), the errors of a bad one (1)
for q in --quiet -q; do
    expect 0 "" "" "$ini_check" $q ok.ini
    [ ! -s "$tmp/out" ] && [ ! -s "$tmp/err" ] ||
        { echo "FAIL: shmrpc-ini-check $q ok.ini printed something"; fail=$((fail + 1)); }
done
printf '[defaults]\nlog_dir = logs\nmax_proc = 3\n' >"$tmp/bad.ini"
expect 1 err "unknown key 'max_proc' in [defaults]" "$ini_check" --quiet bad.ini

# shmrpc-service: --foreground after the file, and --; a file that is not there gets
# past the options (status 1, not the usage's 2)
expect 1 err "missing.ini" "$service" missing.ini --foreground
expect 1 err "missing.ini" "$service" --foreground -- missing.ini
expect 2 err "usage: shmrpc-service" "$service" a.ini b.ini
# --module-host, how shmrpc-service runs a module= service's manager: too few arguments is
# 2 with its usage; a module that does not load is 1 with the reason, before any listen.
expect 2 err "usage: shmrpc-service --module-host NAME MODULE WORKERS" "$service" --module-host a b
expect 1 err "x: cannot load module $tmp/missing.so: " "$service" --module-host x "$tmp/missing.so" \
    1 shm://options_test_x - - - - - 16

# shmrpcctl: its own options before the command, the command's after it, --opt=value
expect 0 out "usage: shmrpcctl" "$ctl" help
expect 0 out "usage: shmrpcctl" "$ctl" status --help
expect 0 out "usage: shmrpcctl" "$ctl" logs -h
expect 0 out "usage: shmrpcctl" "$ctl" queue --help
expect 1 err "cannot reach the supervisor" "$ctl" --ini ok.ini status
expect 1 err "cannot reach the supervisor" "$ctl" --ini=ok.ini status --json
expect 1 err "cannot reach the supervisor" "$ctl" -a shm://options-test-none-$$ logs s -n5
expect 1 err "cannot reach the supervisor" "$ctl" logs --ini=ok.ini s -n 5 --
expect 2 err "-n takes 1 to 1000 lines" "$ctl" logs --ini=ok.ini s -n0
expect 2 err "name a supervisor" "$ctl" --ini ok.ini ls
expect 2 err "shmrpcctl: status: option '--no-wait' does not go with this command" "$ctl" status --no-wait
expect 0 out "[]" "$ctl" ls options-test-none-$$ --json
expect 0 out "nothing to remove" "$ctl" clean --dry-run -- options-test-none-$$
expect 1 err "shm://options-test-none-$$" "$ctl" call --timeout=2000 shm://options-test-none-$$ m
expect 1 err "options-test-none-$$" "$ctl" queue push --timeout=0 options-test-none-$$ -1

[ "$fail" -eq 0 ] && echo "all passed" || echo "$fail failed"
exit "$fail"
