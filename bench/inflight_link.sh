#!/bin/sh
# SPDX-License-Identifier: MIT
# inflight_link.sh BUILD_DIR [LOSS_PERCENT]: shmrpc-bench-inflight between two network
# namespaces through tests/hosts' link emulator (1 ms each way), 16 B and 64 KiB echoes,
# every row twice: plain tcp:// then TLS, and the TLS/plain ratio of the row's calls/s.
# TLS is verified as a client off loopback always is: a CA and a server certificate naming
# 10.77.1.2 are made with the openssl program (as tests/hosts/three_hosts_test.c does), so
# openssl must be installed. Needs root; makes the namespaces shmrpcb-* with
# tests/hosts/hosts.sh and tears them down however it ends. Every process is bounded by
# timeout(1).
set -u
build=${1:?usage: inflight_link.sh BUILD_DIR [LOSS_PERCENT]}
loss=${2:-0}
here=$(cd "$(dirname "$0")" && pwd)
hosts="$here/../tests/hosts/hosts.sh"
bin="$build/bin/shmrpc-bench-inflight"
p=shmrpcb
if ! command -v openssl >/dev/null; then
    echo "inflight_link.sh: needs the openssl program" >&2
    exit 1
fi
dir=$(mktemp -d) || exit 1
# The servers die with their namespace's processes: their statistics segments (in the one
# /dev/shm of the machine) go with the rest.
trap 'sh "$hosts" down $p; rm -rf "$dir" /dev/shm/shmrpc-"$(id -u)"/shmrpc.stats.tcp.10.77.1.2:700[01]' EXIT
# A CA and a certificate it signed for the server's address; ECDSA P-256, valid two days.
key="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
(cd "$dir" && timeout 60 sh -c "
    openssl req -x509 $key -keyout ca.key -out ca.pem -days 2 -subj /CN=shmrpc-bench-ca &&
    printf 'subjectAltName=IP:10.77.1.2\n' >h1.ext &&
    openssl req $key -keyout h1.key -out h1.csr -subj /CN=h1 &&
    openssl x509 -req -in h1.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out h1.pem \
        -days 2 -extfile h1.ext") >"$dir/cert.err" 2>&1 ||
    { cat "$dir/cert.err" >&2; exit 1; }
sh "$hosts" down $p 2>/dev/null
sh "$hosts" up $p || exit 1
mkfifo "$dir/ctl"
ip netns exec $p-r timeout 400 "$build/bin/linkemu" --tun emu0 --control "$dir/ctl" \
    --delay-us 1000 --loss "$loss" >"$dir/emu.log" 2>&1 &
exec 9>"$dir/ctl" # linkemu reads commands until its control FIFO closes
ip netns exec $p-h1 timeout 380 "$bin" server tcp://10.77.1.2:7000 &
ip netns exec $p-h1 timeout 380 "$bin" server tcp://10.77.1.2:7001 tls "$dir/h1.pem" \
    "$dir/h1.key" &
for bytes in 16 65536; do
    ip netns exec $p-c timeout 120 "$bin" client tcp://10.77.1.2:7000 "$bytes" 4 \
        >"$dir/plain" || exit 1
    ip netns exec $p-c timeout 120 "$bin" client tcp://10.77.1.2:7001 "$bytes" 4 \
        tls "$dir/ca.pem" >"$dir/tls" || exit 1
    # Each plain row, then the TLS row's calls/s and TLS/plain.
    awk 'function cps(l,  i, n, f) { n = split(l, f, " ");
             for (i = 2; i <= n; i++) if (f[i] ~ /^calls\/s/) return f[i - 1]; return 0 }
         NR == FNR { tls[FNR] = $0; next }
         { t = cps(tls[FNR]); q = cps($0);
           printf "%s\n        TLS: %9.0f calls/s, TLS/plain %.2f\n", $0, t, (q > 0 ? t / q : 0) }' \
        "$dir/tls" "$dir/plain"
done
cat "$dir/emu.log"
