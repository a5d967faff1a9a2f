#!/bin/sh
# SPDX-License-Identifier: MIT
# inflight_link.sh BUILD_DIR [LOSS_PERCENT]: shmrpc-bench-inflight between two network
# namespaces through tests/hosts' link emulator (1 ms each way), 16 B and 64 KiB echoes.
# Needs root; makes the namespaces shmrpcb-* with tests/hosts/hosts.sh and tears them down
# however it ends. Every process is bounded by timeout(1).
set -u
build=${1:?usage: inflight_link.sh BUILD_DIR [LOSS_PERCENT]}
loss=${2:-0}
here=$(cd "$(dirname "$0")" && pwd)
hosts="$here/../tests/hosts/hosts.sh"
p=shmrpcb
dir=$(mktemp -d) || exit 1
trap 'sh "$hosts" down $p; rm -rf "$dir"' EXIT
sh "$hosts" down $p 2>/dev/null
sh "$hosts" up $p || exit 1
mkfifo "$dir/ctl"
ip netns exec $p-r timeout 300 "$build/bin/linkemu" --tun emu0 --control "$dir/ctl" \
    --delay-us 1000 --loss "$loss" >"$dir/emu.log" 2>&1 &
exec 9>"$dir/ctl" # linkemu reads commands until its control FIFO closes
ip netns exec $p-h1 timeout 280 "$build/bin/shmrpc-bench-inflight" server tcp://10.77.1.2:7000 &
for bytes in 16 65536; do
    ip netns exec $p-c timeout 120 "$build/bin/shmrpc-bench-inflight" client \
        tcp://10.77.1.2:7000 "$bytes" 4 || exit 1
done
cat "$dir/emu.log"
