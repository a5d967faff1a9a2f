#!/bin/sh
# SPDX-License-Identifier: MIT
# The harness of the three-hosts test (docs/hosts-test.md): network namespaces as hosts.
#
#   hosts.sh run DRIVER LINKEMU   clean up after dead runs, make the namespaces, run DRIVER
#                                 in them (three_hosts_test), tear everything down; its status
#   hosts.sh up PREFIX            make PREFIX-r (the router), PREFIX-h1..h3 and PREFIX-c
#   hosts.sh down PREFIX          kill every process in them, delete them (and their links)
#   hosts.sh clean                `down` every shmrpch-PID namespace whose hosts.sh is gone
#
# Topology: each of h1, h2, h3 and c has one veth to the router (10.77.N.2 there, 10.77.N.1
# in the router, N = 1, 2, 3, and 10 for c), and a route to 10.77.0.0/16 through it, nothing
# else: no default route, no link to the namespace this runs in. The router forwards, but
# by policy routing a packet that arrives from a veth goes to table 77, whose only route is
# the TUN device emu0, where linkemu (started by the driver in the router) delays it, drops
# some and hands the rest back; back from emu0 it is routed by the main table to its veth.
# Why not a bridge and `tc netem` as issue 17 asked: the kernel here has no sch_netem
# ("Error: Specified qdisc kind is unknown."), so the packets must cross a program, and a
# router is where a program can see them all.
#
# Needs root (CI runs as root). Where a namespace cannot be made, this fails and says why:
# the test must not pass by not running. Every loop is bounded.
set -u

PREFIX_ALL=shmrpch
ADDRS="1 2 3 10" # the last octet but one: h1 h2 h3 c

fail() {
	echo "hosts.sh: FAIL: $*" >&2
	exit 1
}

# ns_of N: the namespace of network 10.77.N.0/24
ns_of() {
	case $2 in
	10) echo "$1-c" ;;
	*) echo "$1-h$2" ;;
	esac
}

# Runs "$@" and fails with what it printed when it fails.
must() {
	out=$("$@" 2>&1) || fail "'$*' failed: $out"
}

# sysw NS KEY VALUE: sets net.KEY (a/b/c) in namespace NS; /proc/sys/net is the namespace
# of whoever opens it, and procps' sysctl may be missing from a minimal system.
sysw() {
	must ip netns exec "$1" sh -c "echo $3 >/proc/sys/net/$2"
}

up() {
	p=$1
	command -v ip >/dev/null || fail "no 'ip' command (iproute2)"
	[ "$(id -u)" = 0 ] || fail "needs root to make network namespaces (CI runs as root); uid $(id -u)"
	[ -c /dev/net/tun ] || fail "no /dev/net/tun: the link emulator needs a TUN device"
	r="$p-r"
	must ip netns add "$r"
	must ip -n "$r" link set lo up
	for n in $ADDRS; do
		must ip netns add "$(ns_of "$p" "$n")"
	done
	for ns in "$r" "$p-h1" "$p-h2" "$p-h3" "$p-c"; do
		# No IPv6: no router solicitations or neighbour discovery to pass through the
		# emulator; only the test's IPv4 traffic exists in these namespaces.
		sysw "$ns" ipv6/conf/all/disable_ipv6 1
		sysw "$ns" ipv6/conf/default/disable_ipv6 1
		must ip -n "$ns" link set lo up
	done
	# The router forwards, and the packets that emu0 hands back arrive there from the
	# "wrong" interface, which strict reverse-path filtering would drop.
	sysw "$r" ipv4/ip_forward 1
	sysw "$r" ipv4/conf/all/rp_filter 0
	sysw "$r" ipv4/conf/default/rp_filter 0
	sysw "$r" ipv4/conf/all/send_redirects 0
	must ip -n "$r" tuntap add dev emu0 mode tun
	must ip -n "$r" link set emu0 up
	must ip -n "$r" route add default dev emu0 table 77
	for n in $ADDRS; do
		ns=$(ns_of "$p" "$n")
		# Made in the router and moved into the host at once: nothing is ever created in
		# the namespace this script runs in.
		must ip -n "$r" link add "v$n" type veth peer name eth0 netns "$ns"
		must ip -n "$r" addr add "10.77.$n.1/24" dev "v$n"
		must ip -n "$r" link set "v$n" up
		must ip -n "$r" rule add iif "v$n" lookup 77 pref 1000
		must ip -n "$ns" addr add "10.77.$n.2/24" dev eth0
		must ip -n "$ns" link set eth0 up
		must ip -n "$ns" route add 10.77.0.0/16 via "10.77.$n.1"
	done
}

down() {
	p=$1
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$p-" | head -n 20); do
		# A namespace lives on while a process is in it: kill them first (bounded).
		i=0
		while [ $i -lt 50 ]; do
			pids=$(ip netns pids "$ns" 2>/dev/null)
			[ -z "$pids" ] && break
			# shellcheck disable=SC2086 # one pid a word
			kill -9 $pids 2>/dev/null
			sleep 0.1
			i=$((i + 1))
		done
		[ -n "$(ip netns pids "$ns" 2>/dev/null)" ] && echo "hosts.sh: processes live on in $ns" >&2
		ip netns del "$ns" 2>/dev/null || echo "hosts.sh: could not delete $ns" >&2
	done
}

# A run is dead when its hosts.sh (the pid in the names) is gone, or that pid now belongs
# to something else.
clean() {
	for pid in $(ip netns list 2>/dev/null | awk '{print $1}' |
		sed -n "s/^$PREFIX_ALL-\([0-9][0-9]*\)-.*/\1/p" | sort -u | head -n 50); do
		if ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q hosts.sh; then
			echo "hosts.sh: removing the namespaces of dead run $pid" >&2
			down "$PREFIX_ALL-$pid"
		fi
	done
	# The directories of dead runs (the driver's logs), bounded like the namespaces.
	for d in $(find /tmp -maxdepth 1 -name "$PREFIX_ALL-*.*" -type d 2>/dev/null | head -n 50); do
		pid=$(basename "$d" | sed -n "s/^$PREFIX_ALL-\([0-9][0-9]*\)\..*/\1/p")
		[ -n "$pid" ] || continue
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q hosts.sh || rm -rf "$d"
	done
}

run() {
	[ $# -ge 2 ] || fail "usage: hosts.sh run DRIVER LINKEMU [ARGS...]"
	driver=$1 emu=$2
	shift 2
	p="$PREFIX_ALL-$$"
	child=
	dir=
	# Torn down however this ends: the driver failing, a signal (ctest's timeout, ^C), or
	# an error here. SIGKILL leaves them to the next run's clean.
	trap 'down "$p"; [ -n "$dir" ] && rm -rf "$dir"' EXIT
	trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; exit 130' INT TERM HUP
	clean
	(up "$p") || exit 1
	dir=$(mktemp -d "/tmp/$p.XXXXXX") || fail "mktemp failed"
	# The driver's own watchdog ends it well before ctest's TIMEOUT; timeout(1) is the
	# bound on top of that. In the background, so that a signal to this script is handled
	# at once (sh runs a trap only once the foreground command has ended).
	timeout -k 5 200 "$driver" --prefix "$p" --dir "$dir" --linkemu "$emu" "$@" &
	child=$!
	wait "$child"
}
cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
run) run "$@" ;;
up) up "$1" ;;
down) down "$1" ;;
clean) clean ;;
*) fail "usage: hosts.sh run DRIVER LINKEMU | up PREFIX | down PREFIX | clean" ;;
esac
