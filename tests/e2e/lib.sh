# shellcheck shell=bash
#
# tests/e2e/lib.sh: the standard end-to-end topology in network namespaces,
# and helpers to run sipnatd in it.  Source it from a test script:
#
#	. "$(dirname "$0")/lib.sh"
#	e2e_require_root
#	e2e_setup
#	e2e_write_conf "$E2E_TMP/sipnat.ini"
#	e2e_start_sipnatd "$E2E_TMP/sipnat.ini"
#	e2e_ping wan1 203.0.113.1 || fail "no echo reply"
#	pass
#
# A test exits 0 on pass, 1 on fail, 77 on skip (pass, fail, skip do that).
# Everything lives in namespaces named after the test's pid; a trap on EXIT,
# INT and TERM kills what was started and deletes them, also on failure.
# Nothing in the root namespace (routes, rules, sysctls, firewall) is touched.
#
#   lan1 10.0.0.11 ---\                                   /--- wan1 198.51.100.10
#                      br0 [gw] wan0 ---- gw0 [inet] br1 +---- wan2 198.51.100.20
#   lan2 10.0.0.12 ---/ 10.0.0.1  203.0.113.1   .254   .1 \
#                                                   w3 192.0.2.1 --- wan3 192.0.2.30
#
# The WAN side has no route to 10.0.0.0/8.  Each host's interface is eth0.

shopt -s extglob

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRCDIR=${SRCDIR:-$(cd "$E2E_DIR/../.." && pwd)}
BUILDDIR=${BUILDDIR:-$SRCDIR}
SIPNATD=${SIPNATD:-$BUILDDIR/sipnatd}
SIPNATCTL=${SIPNATCTL:-$BUILDDIR/sipnatctl}
SIPNAT_ROUTES=${SIPNAT_ROUTES:-$SRCDIR/scripts/sipnat-routes}

# Names: unique per run so parallel tests never collide.
E2E_ID=${E2E_ID:-$$}
E2E_PREFIX=${E2E_PREFIX:-sipnat-$E2E_ID-}
E2E_TUN=${E2E_TUN:-snt$E2E_ID}
E2E_TUN=${E2E_TUN:0:15}
# shellcheck disable=SC2034  # for tests that loop over the hosts
E2E_NODES="gw inet lan1 lan2 wan1 wan2 wan3"

# Addresses (override before e2e_setup).
LAN_NET=${LAN_NET:-10.0.0.0/24}
LAN_PLEN=${LAN_PLEN:-24}
GW_LAN=${GW_LAN:-10.0.0.1}
LAN1=${LAN1:-10.0.0.11}
LAN2=${LAN2:-10.0.0.12}
GW_WAN=${GW_WAN:-203.0.113.1}		# the public address
INET_GW=${INET_GW:-203.0.113.254}
WAN_PLEN=${WAN_PLEN:-24}
INET_NET1=${INET_NET1:-198.51.100.1}	# inet's leg to wan1, wan2
INET_NET2=${INET_NET2:-192.0.2.1}	# inet's leg to wan3
WAN1=${WAN1:-198.51.100.10}
WAN2=${WAN2:-198.51.100.20}
WAN3=${WAN3:-192.0.2.30}
E2E_IPV6=${E2E_IPV6:-0}			# 1 keeps IPv6 enabled in the namespaces

# Debian's python3 starts fastest; a pyenv shim takes half a second.
if [ -z "${E2E_PYTHON:-}" ]; then
	E2E_PYTHON=python3
	[ -x /usr/bin/python3 ] && E2E_PYTHON=/usr/bin/python3
fi

# Config defaults written by e2e_write_conf.
E2E_PORT_RANGE=${E2E_PORT_RANGE:-10000-32767}
E2E_LOG_LEVEL=${E2E_LOG_LEVEL:-debug}
E2E_TABLE=${E2E_TABLE:-7060}
E2E_MARK=${E2E_MARK:-0x5060}
E2E_RULE_PRIORITY=${E2E_RULE_PRIORITY:-100}
# The [timeouts] section, "key = value" one a line: shorter than sipnatd's
# defaults.  Override the whole block here, or single keys as arguments to
# e2e_write_conf ("timeouts.udp = 5").
E2E_TIMEOUTS=${E2E_TIMEOUTS:-"udp = 60
tcp_established = 120
tcp_transitory = 30
icmp = 30
fragment = 5"}

# Run-time state.
E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/sipnat-e2e.XXXXXX") || exit 1
chmod 755 "$E2E_TMP"
E2E_SOCK=$E2E_TMP/sipnatd.sock
E2E_CONF=
E2E_LOG=$E2E_TMP/sipnatd.log
E2E_SIPNATD_PID=
E2E_ROUTES_UP=0
E2E_LAST_PID=
E2E_PIDS=()
E2E_EXIT_HOOKS=()
E2E_NS_MADE=()
export SIPNAT_STATE_DIR=$E2E_TMP/state

# Print a progress line.
e2e_log() {
	echo "# $*"
}

# Test passed: say so and exit 0.
pass() {
	echo "PASS${1:+: $*}"
	exit 0
}

# Test failed: say why, show the daemon's log tail, exit 1.
fail() {
	echo "FAIL: $*"
	if [ -s "$E2E_LOG" ]; then
		echo "--- last lines of $E2E_LOG"
		tail -n "${E2E_LOG_LINES:-30}" "$E2E_LOG"
	fi
	exit 1
}

# Test cannot run here: say why, exit 77.
skip() {
	echo "SKIP: $*"
	exit 77
}

# Skip unless root with working network namespaces and the given commands.
e2e_require_root() {
	local c

	[ "$(id -u)" = 0 ] || skip "needs root"
	for c in ip nft "$E2E_PYTHON" "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip "needs $c"
	done
	ip netns add "${E2E_PREFIX}probe" 2>/dev/null ||
	    skip "cannot create network namespaces"
	ip netns del "${E2E_PREFIX}probe"
}

# Skip unless the real binaries are built.
e2e_require_sipnatd() {
	[ -x "$SIPNATD" ] || skip "sipnatd not built ($SIPNATD)"
	[ -x "$SIPNATCTL" ] || skip "sipnatctl not built ($SIPNATCTL)"
}

# Register a command to run at exit, before the namespaces go.
e2e_on_exit() {
	E2E_EXIT_HOOKS+=("$*")
}

# The real name of a namespace of the topology.
e2e_ns() {
	echo "$E2E_PREFIX$1"
}

# Run a command in a namespace.
e2e_exec() {
	local ns=$1

	shift
	ip netns exec "$E2E_PREFIX$ns" "$@"
}

# Start a command in a namespace in the background, output to LOG;
# E2E_LAST_PID is its pid.  It is killed at exit.
e2e_bg() {
	local ns=$1 log=$2

	shift 2
	ip netns exec "$E2E_PREFIX$ns" "$@" >"$log" 2>&1 </dev/null &
	E2E_LAST_PID=$!
	E2E_PIDS+=("$E2E_LAST_PID")
}

# Stop a process started with e2e_bg: TERM, then KILL after SECS (5).
# Returns the process's exit status.
e2e_kill() {
	local pid=$1 secs=${2:-5} i rc

	kill -0 "$pid" 2>/dev/null || {
		wait "$pid" 2>/dev/null
		return
	}
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < secs * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	rc=$?
	return "$rc"
}

# Poll until a command succeeds; SECS may be fractional.  1 on time-out.
e2e_wait_for() {
	local secs=$1 n i

	shift
	n=$(awk -v s="$secs" 'BEGIN { printf "%d", s * 20 }')
	for ((i = 0; i <= n; i++)); do
		"$@" && return 0
		sleep 0.05
	done
	return 1
}

# Cleanup: hooks, processes, namespaces, temp dir.  Keeps the exit status.
e2e_cleanup() {
	local rc=$? i pid ns p

	trap - EXIT INT TERM
	for ((i = ${#E2E_EXIT_HOOKS[@]} - 1; i >= 0; i--)); do
		eval "${E2E_EXIT_HOOKS[i]}" >/dev/null 2>&1
	done
	for pid in "${E2E_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	for ns in "${E2E_NS_MADE[@]}"; do
		for p in $(ip netns pids "$ns" 2>/dev/null); do
			kill -TERM "$p" 2>/dev/null
		done
	done
	for ((i = 0; i < 20; i++)); do
		p=
		for pid in "${E2E_PIDS[@]}"; do
			kill -0 "$pid" 2>/dev/null && p=1
		done
		[ -z "$p" ] && break
		sleep 0.1
	done
	for pid in "${E2E_PIDS[@]}"; do
		kill -KILL "$pid" 2>/dev/null
	done
	for ns in "${E2E_NS_MADE[@]}"; do
		for p in $(ip netns pids "$ns" 2>/dev/null); do
			kill -KILL "$p" 2>/dev/null
		done
		ip netns del "$ns" 2>/dev/null
	done
	wait 2>/dev/null
	if [ "${E2E_KEEP:-0}" = 1 ] || { [ "$rc" != 0 ] && [ "$rc" != 77 ] &&
	    [ -n "${E2E_KEEP_ON_FAIL:-}" ]; }; then
		echo "# kept $E2E_TMP"
	else
		rm -rf "$E2E_TMP"
	fi
	exit "$rc"
}
trap e2e_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Create a namespace of the topology with lo up.
e2e_add_ns() {
	local ns=$E2E_PREFIX$1

	ip netns add "$ns" || return 1
	E2E_NS_MADE+=("$ns")
	ip -n "$ns" link set lo up || return 1
	if [ "$E2E_IPV6" != 1 ]; then
		e2e_exec "$1" sh -c 'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6;
		    echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6' \
		    2>/dev/null
	fi
	return 0
}

# A veth pair between two namespaces: e2e_veth NS1 IF1 NS2 IF2.
e2e_veth() {
	ip link add "$2" netns "$E2E_PREFIX$1" type veth \
	    peer name "$4" netns "$E2E_PREFIX$3" || return 1
	ip -n "$E2E_PREFIX$1" link set "$2" up &&
	    ip -n "$E2E_PREFIX$3" link set "$4" up
}

# A bridge in a namespace, with bridge netfilter off there.
e2e_bridge() {
	ip -n "$E2E_PREFIX$1" link add "$2" type bridge || return 1
	ip -n "$E2E_PREFIX$1" link set "$2" up || return 1
	e2e_exec "$1" sh -c 'for f in /proc/sys/net/bridge/bridge-nf-call-iptables \
	    /proc/sys/net/bridge/bridge-nf-call-ip6tables \
	    /proc/sys/net/bridge/bridge-nf-call-arptables; do
		[ -e "$f" ] && echo 0 > "$f"; done; true'
}

# Write a sysctl (dotted name) in a namespace.
e2e_sysctl() {
	e2e_exec "$1" sh -c "echo '$3' > /proc/sys/$(echo "$2" | tr . /)"
}

# A host: NS, its eth0 peer IF in namespace PEERNS, address, gateway.
e2e_host() {
	local ns=$1 peerns=$2 peerif=$3 addr=$4 plen=$5 gw=$6

	e2e_add_ns "$ns" &&
	    e2e_veth "$ns" eth0 "$peerns" "$peerif" &&
	    ip -n "$E2E_PREFIX$ns" addr add "$addr/$plen" dev eth0 &&
	    ip -n "$E2E_PREFIX$ns" route add default via "$gw"
}

# Build the whole topology.
e2e_setup() {
	e2e_log "building the topology (namespaces $E2E_PREFIX*)"
	{
		e2e_add_ns gw && e2e_add_ns inet &&

		# gw: LAN bridge, WAN leg.
		e2e_bridge gw br0 &&
		ip -n "$(e2e_ns gw)" addr add "$GW_LAN/$LAN_PLEN" dev br0 &&
		e2e_veth gw wan0 inet gw0 &&
		ip -n "$(e2e_ns gw)" addr add "$GW_WAN/$WAN_PLEN" dev wan0 &&
		ip -n "$(e2e_ns gw)" route add default via "$INET_GW" &&

		# inet: a router with no route to 10/8.
		ip -n "$(e2e_ns inet)" addr add "$INET_GW/$WAN_PLEN" dev gw0 &&
		e2e_bridge inet br1 &&
		ip -n "$(e2e_ns inet)" addr add "$INET_NET1/24" dev br1 &&
		e2e_sysctl inet net.ipv4.ip_forward 1 &&

		# LAN hosts on br0.
		e2e_host lan1 gw lan1 "$LAN1" "$LAN_PLEN" "$GW_LAN" &&
		ip -n "$(e2e_ns gw)" link set lan1 master br0 &&
		e2e_host lan2 gw lan2 "$LAN2" "$LAN_PLEN" "$GW_LAN" &&
		ip -n "$(e2e_ns gw)" link set lan2 master br0 &&

		# WAN hosts.
		e2e_host wan1 inet w1 "$WAN1" 24 "$INET_NET1" &&
		ip -n "$(e2e_ns inet)" link set w1 master br1 &&
		e2e_host wan2 inet w2 "$WAN2" 24 "$INET_NET1" &&
		ip -n "$(e2e_ns inet)" link set w2 master br1 &&
		e2e_host wan3 inet w3 "$WAN3" 24 "$INET_NET2" &&
		ip -n "$(e2e_ns inet)" addr add "$INET_NET2/24" dev w3
	} || fail "cannot build the topology"
	if [ "${E2E_NO_CHECK:-0}" != 1 ]; then
		e2e_check_topology || fail "the topology does not work"
	fi
}

# Quick checks that the topology forwards what it should and not 10/8.
e2e_check_topology() {
	e2e_ping lan1 "$GW_LAN" >/dev/null || {
		echo "lan1 cannot ping $GW_LAN"
		return 1
	}
	e2e_ping wan1 "$GW_WAN" >/dev/null || {
		echo "wan1 cannot ping $GW_WAN"
		return 1
	}
	e2e_ping wan3 "$WAN1" >/dev/null || {
		echo "wan3 cannot ping $WAN1"
		return 1
	}
	if ip -n "$(e2e_ns inet)" route get "$LAN1" >/dev/null 2>&1; then
		echo "inet has a route to $LAN1"
		return 1
	fi
	return 0
}

# ICMP echo from a namespace: e2e_ping NS DST [-c COUNT] [-W SECS]
# [-i ID] [-t TTL] [-I SRC] [-s SIZE] [-M do|dont].  0 if any reply came;
# prints "N/M replies".  Needs no ping binary, only python3.
e2e_ping() {
	local ns=$1 dst=$2

	shift 2
	e2e_exec "$ns" "$E2E_PYTHON" - "$dst" "$@" <<'EOF'
import os, select, socket, struct, sys, time

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff

dst, args = sys.argv[1], sys.argv[2:]
opt = {"-c": "1", "-W": "1", "-i": str(os.getpid() & 0xffff), "-t": "",
       "-I": "", "-s": "56", "-M": ""}
while args:
    k = args.pop(0)
    if k not in opt or not args:
        sys.exit("e2e_ping: bad option %s" % k)
    opt[k] = args.pop(0)
count, wait, ident = int(opt["-c"]), float(opt["-W"]), int(opt["-i"], 0)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
if opt["-I"]:
    s.bind((opt["-I"], 0))
if opt["-t"]:
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, int(opt["-t"]))
if opt["-M"]:
    s.setsockopt(socket.IPPROTO_IP, 10,  # IP_MTU_DISCOVER
                 2 if opt["-M"] == "do" else 0)
payload = bytes(i & 0xff for i in range(int(opt["-s"])))
got = 0
for seq in range(count):
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    pkt = struct.pack("!BBHHH", 8, 0, csum(hdr + payload), ident, seq) + payload
    try:
        s.sendto(pkt, (dst, 0))
    except OSError as e:
        print("send: %s" % e)
        continue
    end = time.monotonic() + wait
    while True:
        left = end - time.monotonic()
        if left <= 0 or not select.select([s], [], [], left)[0]:
            break
        data, addr = s.recvfrom(65535)
        hl = (data[0] & 15) * 4
        t, c, _, rid, rseq = struct.unpack("!BBHHH", data[hl:hl + 8])
        if t == 0 and rid == ident and rseq == seq and addr[0] == dst:
            got += 1
            break
print("%d/%d replies" % (got, count))
sys.exit(0 if got else 1)
EOF
}

# Set or add a config key: e2e_conf_set "section.key" "value".
e2e_conf_set() {
	local k=$1

	if [ -z "${E2E_CONF_KV[$k]+set}" ]; then
		E2E_CONF_KEYS+=("$k")
	fi
	E2E_CONF_KV[$k]=$2
}

# Write a sipnatd config for this topology to FILE.  Extra arguments set or
# add keys: "section.key = value", "[section] key = value", or "-section.key"
# to leave a key out.  With a built sipnatd, the file is checked with -t.
e2e_write_conf() {
	local file=$1 arg sec key val k line s sections=()

	shift
	declare -gA E2E_CONF_KV=()
	E2E_CONF_KEYS=()
	e2e_conf_set general.user ""
	e2e_conf_set general.control_socket "$E2E_SOCK"
	e2e_conf_set general.log_level "$E2E_LOG_LEVEL"
	e2e_conf_set tun.name "$E2E_TUN"
	e2e_conf_set tun.mtu 1500
	e2e_conf_set lan.networks "$LAN_NET"
	e2e_conf_set lan.interfaces br0
	e2e_conf_set wan.interface wan0
	e2e_conf_set wan.address "$GW_WAN"
	e2e_conf_set wan.port_range "$E2E_PORT_RANGE"
	while IFS= read -r line; do
		[[ $line == *=* ]] || continue
		key=$(echo "${line%%=*}" | tr -d '[:space:]')
		val=$(echo "${line#*=}" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
		e2e_conf_set "timeouts.$key" "$val"
	done <<<"$E2E_TIMEOUTS"
	e2e_conf_set routes.table "$E2E_TABLE"
	e2e_conf_set routes.mark "$E2E_MARK"
	e2e_conf_set routes.rule_priority "$E2E_RULE_PRIORITY"

	for arg in "$@"; do
		if [[ $arg == -* ]]; then
			unset "E2E_CONF_KV[${arg#-}]"
			continue
		fi
		if [[ $arg =~ ^\[([^]]+)\][[:space:]]*([^=[:space:]]+)[[:space:]]*=[[:space:]]*(.*)$ ]] ||
		    [[ $arg =~ ^([^.=[:space:]]+)\.([^=[:space:]]+)[[:space:]]*=[[:space:]]*(.*)$ ]]; then
			sec=${BASH_REMATCH[1]}
			key=${BASH_REMATCH[2]}
			val=${BASH_REMATCH[3]}
			val=${val%%+([[:space:]])}
			e2e_conf_set "$sec.$key" "$val"
		else
			echo "e2e_write_conf: cannot parse '$arg'" >&2
			return 1
		fi
	done

	for k in "${E2E_CONF_KEYS[@]}"; do
		s=${k%%.*}
		[[ " ${sections[*]} " == *" $s "* ]] || sections+=("$s")
	done
	{
		echo "; written by tests/e2e/lib.sh for namespaces $E2E_PREFIX*"
		for s in "${sections[@]}"; do
			echo "[$s]"
			for k in "${E2E_CONF_KEYS[@]}"; do
				[ "${k%%.*}" = "$s" ] || continue
				[ -n "${E2E_CONF_KV[$k]+set}" ] || continue
				val=${E2E_CONF_KV[$k]}
				echo "${k#*.} =${val:+ $val}"
			done
		done
	} >"$file" || return 1
	E2E_CONF=$file
	if [ -x "$SIPNATD" ] && ! "$SIPNATD" -t -c "$file" >"$E2E_TMP/conf-check.log" 2>&1; then
		echo "e2e_write_conf: sipnatd rejects $file:" >&2
		cat "$E2E_TMP/conf-check.log" >&2
		return 1
	fi
	return 0
}

# Run sipnat-routes in the gw namespace: e2e_routes up|down|status [CONF].
e2e_routes() {
	local cmd=$1 conf=${2:-$E2E_CONF}

	e2e_exec gw env SIPNATD="$SIPNATD" SIPNAT_STATE_DIR="$SIPNAT_STATE_DIR" \
	    bash "$SIPNAT_ROUTES" "$cmd" -c "$conf"
}

# Put the routes up and start sipnatd in gw on CONF; wait for its socket.
# Which gateway the test runs against: sipnatd (default) or, with
# E2E_GATEWAY=kernel, the kernel's own NAT and SIP helper, for comparison.
# Assertions on sipnatd's internal state (sipnatctl) go inside
# "if e2e_is_sipnatd; then ... fi"; what a user sees is asserted for both.
E2E_GATEWAY=${E2E_GATEWAY:-sipnatd}
e2e_is_sipnatd() {
	[ "$E2E_GATEWAY" = sipnatd ]
}

e2e_start_sipnatd() {
	local conf=${1:-$E2E_CONF} secs=${E2E_START_SECS:-15}

	[ -n "$conf" ] || fail "e2e_start_sipnatd: no config"
	E2E_CONF=$conf
	case $E2E_GATEWAY in
	sipnatd) ;;
	kernel)
		e2e_kernel_start "$conf"
		return
		;;
	*)
		fail "E2E_GATEWAY=$E2E_GATEWAY: must be sipnatd or kernel"
		;;
	esac
	[ -x "$SIPNATD" ] || fail "sipnatd not built ($SIPNATD)"
	e2e_routes up "$conf" || fail "sipnat-routes up failed"
	if [ "$E2E_ROUTES_UP" = 0 ]; then
		e2e_on_exit '[ "$E2E_ROUTES_UP" = 1 ] && e2e_routes down'
	fi
	E2E_ROUTES_UP=1
	rm -f "$E2E_SOCK"
	e2e_bg gw "$E2E_LOG" "$SIPNATD" -f -c "$conf"
	E2E_SIPNATD_PID=$E2E_LAST_PID
	if ! e2e_wait_for "$secs" e2e_sipnatd_ready; then
		kill -0 "$E2E_SIPNATD_PID" 2>/dev/null ||
		    fail "sipnatd exited at start"
		fail "sipnatd did not open $E2E_SOCK within ${secs}s"
	fi
	e2e_log "sipnatd running, pid $E2E_SIPNATD_PID, log $E2E_LOG"
}

# Is sipnatd alive with its control socket?
e2e_sipnatd_ready() {
	kill -0 "$E2E_SIPNATD_PID" 2>/dev/null || return 1
	[ -S "$E2E_SOCK" ]
}

# Is sipnatd still running?  (With E2E_GATEWAY=kernel: is the kernel
# gateway still set up?)
e2e_sipnatd_alive() {
	if [ "$E2E_GATEWAY" = kernel ]; then
		e2e_kernel_alive
		return
	fi
	[ -n "$E2E_SIPNATD_PID" ] && kill -0 "$E2E_SIPNATD_PID" 2>/dev/null
}

# Stop sipnatd (SIGTERM) and take the routes down.  Returns sipnatd's exit
# status (non-zero after a crash or a sanitizer report).  With
# E2E_GATEWAY=kernel: take the kernel gateway down.
e2e_stop_sipnatd() {
	local rc=0

	if [ "$E2E_GATEWAY" = kernel ]; then
		e2e_kernel_stop
		return
	fi
	if [ -n "$E2E_SIPNATD_PID" ]; then
		e2e_kill "$E2E_SIPNATD_PID" 10
		rc=$?
		E2E_SIPNATD_PID=
	fi
	if [ "$E2E_ROUTES_UP" = 1 ]; then
		e2e_routes down || rc=1
		E2E_ROUTES_UP=0
	fi
	return "$rc"
}

# Run sipnatctl against the running sipnatd.  With E2E_GATEWAY=kernel there
# is none: an unguarded call is a bug in the test, and fails it.
e2e_ctl() {
	if [ "$E2E_GATEWAY" = kernel ]; then
		echo "E2E: e2e_ctl $*: no sipnatd with E2E_GATEWAY=kernel;" \
		    "guard sipnatctl calls with e2e_is_sipnatd" >&2
		# In $(...) fail would only end the subshell.
		[ "$BASH_SUBSHELL" = 0 ] &&
		    fail "e2e_ctl $*: unguarded sipnatctl call with E2E_GATEWAY=kernel"
		return 2
	fi
	e2e_exec gw "$SIPNATCTL" -s "$E2E_SOCK" "$@"
}

# --- E2E_GATEWAY=kernel: the gw namespace as a plain Linux NAT router with
# the kernel's own SIP helper (nf_conntrack_sip, nf_nat_sip), for comparison.
#
# From the sipnatd config it takes lan.networks, wan.interface, wan.address
# (empty: masquerade), sip.ports (each port not ":off" gets the "sip" helper,
# as destination or source port, like sipnatd's ALG), and timeouts.udp,
# tcp_established and icmp (as the gw namespace's conntrack timeouts; udp
# sets both the unreplied and the stream timeout).  Everything else
# (filtering, port range, limits, sip_dialog, on_error) has no kernel
# counterpart and is left at the kernel's behaviour.  The helper's own
# module parameters are global (/sys/module/nf_conntrack_sip/parameters)
# and are only logged, never changed.
#
# E2E_KERNEL_SIP_TCP=1 also puts the helper on TCP to the same ports
# (sipnatd's ALG is UDP only).  $E2E_LOG, whose tail fail shows, gets what
# was set up, conntrack and expectation events (with the conntrack tool) and
# the SIP helper's own reason for each packet it drops (e2e_kernel_listen).

E2E_KERNEL_NFT=${E2E_KERNEL_NFT:-sipnat_kernel_$E2E_ID}
E2E_KERNEL_UP=0
E2E_KERNEL_HOOKED=0
E2E_KERNEL_EVPIDS=()
declare -gA E2E_KERNEL_SAVED=()

# A value from an INI file: e2e_kernel_conf FILE SECTION.KEY DEFAULT.
# The default when the key is not there (an empty value is a value).
e2e_kernel_conf() {
	local v

	if v=$(awk -v s="${2%%.*}" -v k="${2#*.}" '
	    /^[ \t]*[;#]/ { next }
	    /^[ \t]*\[/ { sec = $0; gsub(/^[ \t]*\[|\].*$/, "", sec); next }
	    sec == s && index($0, "=") {
		key = substr($0, 1, index($0, "=") - 1)
		gsub(/[ \t]/, "", key)
		if (key != k)
			next
		val = substr($0, index($0, "=") + 1)
		sub(/[ \t]+;.*$/, "", val)
		gsub(/^[ \t]+|[ \t]+$/, "", val)
		print val
		found = 1
		exit
	    }
	    END { exit !found }' "$1"); then
		printf '%s\n' "$v"
	else
		printf '%s\n' "$3"
	fi
}

# Set a sysctl in gw, remembering the value from before the first change.
e2e_kernel_sysctl() {
	local path=/proc/sys/${1//.//} old

	old=$(e2e_exec gw cat "$path") || return 1
	[ -n "${E2E_KERNEL_SAVED[$1]+set}" ] || E2E_KERNEL_SAVED[$1]=$old
	e2e_sysctl gw "$1" "$2" || return 1
	echo "sysctl $1 = $2 (was $old)"
}

# Is the kernel gateway set up?
e2e_kernel_alive() {
	[ "$E2E_KERNEL_UP" = 1 ] &&
	    e2e_exec gw nft list table ip "$E2E_KERNEL_NFT" >/dev/null 2>&1
}

# The nftables table of the kernel gateway, from the config.
e2e_kernel_ruleset() {
	local nets=$1 wanif=$2 wanaddr=$3 ports=$4 nat

	if [ -n "$wanaddr" ]; then
		nat="snat to $wanaddr"
	else
		nat=masquerade
	fi
	echo "table ip $E2E_KERNEL_NFT {"
	if [ -n "$ports" ]; then
		echo "	ct helper sip-udp { type \"sip\" protocol udp; l3proto ip; }"
		[ "${E2E_KERNEL_SIP_TCP:-0}" = 1 ] &&
		    echo "	ct helper sip-tcp { type \"sip\" protocol tcp; l3proto ip; }"
	fi
	cat <<EOT
	chain helpers {
		type filter hook prerouting priority filter; policy accept;
EOT
	if [ -n "$ports" ]; then
		echo "		udp dport { $ports } ct helper set \"sip-udp\" comment \"sip helper\""
		echo "		udp sport { $ports } ct helper set \"sip-udp\" comment \"sip helper\""
		if [ "${E2E_KERNEL_SIP_TCP:-0}" = 1 ]; then
			echo "		tcp dport { $ports } ct helper set \"sip-tcp\" comment \"sip helper\""
			echo "		tcp sport { $ports } ct helper set \"sip-tcp\" comment \"sip helper\""
		fi
	fi
	cat <<EOT
	}
	chain dstnat {
		type nat hook prerouting priority dstnat; policy accept;
	}
	chain srcnat {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr { $nets } oifname "$wanif" $nat
	}
}
EOT
}

# Copy into $E2E_LOG what the kernel says: conntrack and expectation events
# (with the conntrack tool), and the SIP helper's own reason for every packet
# it drops (nf_ct_helper_log: "nf_ct_sip: dropping packet: ..."), which goes
# to the namespace's IPv4 packet logger: made nfnetlink_log here, group 0,
# read by a small NFLOG listener.  Sysctl changes go to $E2E_TMP/kernel-sysctls.
e2e_kernel_listen() {
	local k

	[ ${#E2E_KERNEL_EVPIDS[@]} = 0 ] || return 0
	if command -v conntrack >/dev/null 2>&1; then
		for k in conntrack expect; do
			ip netns exec "$(e2e_ns gw)" conntrack -E "$k" -o timestamp \
			    >>"$E2E_LOG" 2>&1 </dev/null &
			E2E_PIDS+=("$!")
			E2E_KERNEL_EVPIDS+=("$!")
		done
	else
		echo "no conntrack tool: no conntrack events in this log" >>"$E2E_LOG"
	fi
	e2e_exec gw grep -q '^ 2 .*nfnetlink_log' /proc/net/netfilter/nf_log || {
		echo "no nfnetlink_log: the SIP helper's drop reasons are not logged" >>"$E2E_LOG"
		return 0
	}
	rm -f "$E2E_TMP/nflog.ready"
	ip netns exec "$(e2e_ns gw)" "$E2E_PYTHON" -u -c "$E2E_KERNEL_NFLOG_PY" \
	    "$E2E_TMP/nflog.ready" >>"$E2E_LOG" 2>&1 </dev/null &
	E2E_PIDS+=("$!")
	E2E_KERNEL_EVPIDS+=("$!")
	e2e_wait_for 5 test -e "$E2E_TMP/nflog.ready" ||
	    echo "the NFLOG listener did not start" >>"$E2E_LOG"
	e2e_kernel_sysctl net.netfilter.nf_log.2 nfnetlink_log \
	    >>"$E2E_TMP/kernel-sysctls" ||
	    fail "kernel gateway: cannot set net.netfilter.nf_log.2 in gw"
}

# The NFLOG listener: one line per logged packet, "[time] kernel: PREFIX
# SRC -> DST len N: 'first line of the payload'".
E2E_KERNEL_NFLOG_PY='
import socket, struct, sys, time

ULOG = 4 << 8			# NFNL_SUBSYS_ULOG
PACKET, CONFIG = 0, 1		# NFULNL_MSG_*
PAYLOAD, PREFIX = 9, 10		# NFULA_*


def attr(t, data):
    n = 4 + len(data)
    return struct.pack("=HH", n, t) + data + b"\0" * (-n % 4)


def config(a):
    body = struct.pack("=BBH", 0, 0, 0) + a	# AF_UNSPEC, group 0
    s.send(struct.pack("=IHHII", 16 + len(body), ULOG | CONFIG, 1 | 4, 0, 0) + body)
    r = s.recv(65536)
    if struct.unpack("=H", r[4:6])[0] == 2 and struct.unpack("=i", r[16:20])[0]:
        sys.exit("nflog: cannot configure group 0")


s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)	# NETLINK_NETFILTER
s.bind((0, 0))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
config(attr(1, b"\x01"))				# NFULA_CFG_CMD: BIND
config(attr(2, struct.pack(">IBB", 512, 2, 0)))	# NFULA_CFG_MODE: packet
open(sys.argv[1], "w").close()
while True:
    data, off = s.recv(1 << 20), 0
    while off + 16 <= len(data):
        n, t = struct.unpack("=IH", data[off:off + 6])
        msg, off = data[off + 16:off + n], off + ((n + 3) & ~3)
        if n < 16 or t != ULOG | PACKET:
            continue
        a, prefix, p = 4, "", b""
        while a + 4 <= len(msg):
            al, at = struct.unpack("=HH", msg[a:a + 4])
            if al < 4:
                break
            if at & 0x7fff == PREFIX:
                prefix = msg[a + 4:a + al].rstrip(b"\0").decode(errors="replace").strip()
            elif at & 0x7fff == PAYLOAD:
                p = msg[a + 4:a + al]
            a += (al + 3) & ~3
        what = ""
        if len(p) >= 20 and p[0] >> 4 == 4:
            hl = (p[0] & 15) * 4
            src, dst = socket.inet_ntoa(p[12:16]), socket.inet_ntoa(p[16:20])
            if p[9] in (6, 17) and len(p) >= hl + 4:
                sp, dp = struct.unpack("!HH", p[hl:hl + 4])
                src, dst = "%s:%d" % (src, sp), "%s:%d" % (dst, dp)
            line = p[hl + (8 if p[9] == 17 else 20):].split(b"\n", 1)[0].strip()
            what = " %s -> %s len %d: %r" % (src, dst, struct.unpack("!H", p[2:4])[0],
                                            line[:60].decode(errors="replace"))
        print("[%.6f]\tkernel: %s%s" % (time.time(), prefix, what), flush=True)
'

# Set gw up as a kernel NAT router with the SIP helper, from CONF.
e2e_kernel_start() {
	local conf=$1 nets wanif wanaddr sipports item p ports='' k v t f out

	nets=$(e2e_kernel_conf "$conf" lan.networks 10.0.0.0/8)
	nets=$(echo "$nets" | tr -s ', ' '\n' | grep -v '^$' | paste -sd, - |
	    sed 's/,/, /g')
	wanif=$(e2e_kernel_conf "$conf" wan.interface eth0)
	wanaddr=$(e2e_kernel_conf "$conf" wan.address "")
	sipports=$(e2e_kernel_conf "$conf" sip.ports 5060)
	for item in ${sipports//,/ }; do
		p=${item%%:*}
		[ "${item#*:}" = off ] && [[ $item == *:* ]] && continue
		ports=${ports:+$ports, }$p
	done

	{
		echo "kernel gateway in $(e2e_ns gw) from $conf"
		echo "nf_conntrack_sip parameters (global, unchanged):" \
		    "$(cd /sys/module/nf_conntrack_sip/parameters 2>/dev/null &&
			for f in *; do printf '%s=%s ' "$f" "$(cat "$f")"; done)"
	} >>"$E2E_LOG"

	if [ "$E2E_KERNEL_HOOKED" = 0 ]; then
		e2e_on_exit '[ "$E2E_KERNEL_UP" = 1 ] && e2e_kernel_stop'
		E2E_KERNEL_HOOKED=1
	fi
	E2E_KERNEL_UP=1

	f=$E2E_TMP/kernel-sysctls
	e2e_kernel_sysctl net.ipv4.ip_forward 1 >"$f" ||
	    fail "kernel gateway: cannot set net.ipv4.ip_forward in gw"
	for k in udp tcp_established icmp; do
		v=$(e2e_kernel_conf "$conf" "timeouts.$k" "")
		[ -n "$v" ] || continue
		case $k in
		udp) t="nf_conntrack_udp_timeout nf_conntrack_udp_timeout_stream" ;;
		tcp_established) t=nf_conntrack_tcp_timeout_established ;;
		icmp) t=nf_conntrack_icmp_timeout ;;
		esac
		for t in $t; do
			e2e_kernel_sysctl "net.netfilter.$t" "$v" >>"$f" ||
			    fail "kernel gateway: cannot set net.netfilter.$t in gw"
		done
	done
	cat "$f" >>"$E2E_LOG"

	e2e_kernel_ruleset "$nets" "$wanif" "$wanaddr" "$ports" >"$E2E_TMP/kernel.nft"
	{
		echo "table ip $E2E_KERNEL_NFT"
		echo "delete table ip $E2E_KERNEL_NFT"
		cat "$E2E_TMP/kernel.nft"
	} | e2e_exec gw nft -f - >>"$E2E_LOG" 2>&1 || {
		cat "$E2E_TMP/kernel.nft" >>"$E2E_LOG"
		fail "kernel gateway: cannot load the nftables table"
	}
	e2e_exec gw nft list table ip "$E2E_KERNEL_NFT" >>"$E2E_LOG" 2>&1

	e2e_kernel_listen
	out=$(cat "$f")

	v=masquerade
	[ -n "$wanaddr" ] && v="snat to $wanaddr"
	e2e_log "kernel gateway: ip_forward on, $v for $nets out of $wanif (nft table ip $E2E_KERNEL_NFT)"
	if [ -n "$ports" ]; then
		t=udp
		[ "${E2E_KERNEL_SIP_TCP:-0}" = 1 ] && t=udp/tcp
		e2e_log "kernel gateway: SIP helper (nf_conntrack_sip, nf_nat_sip) on $t ports $ports, as destination or source port"
	else
		e2e_log "kernel gateway: no SIP helper (sip.ports = $sipports)"
	fi
	[ -n "$out" ] && e2e_log "kernel gateway: $(echo "$out" | paste -sd';' - | sed 's/;/; /g')"
	e2e_log "kernel gateway log: $E2E_LOG"
}

# Take the kernel gateway down: the table, its conntrack entries and
# expectations, the event listeners, and the sysctls as they were.
e2e_kernel_stop() {
	local rc=0 k pid

	[ "$E2E_KERNEL_UP" = 1 ] || return 0
	if e2e_exec gw nft list table ip "$E2E_KERNEL_NFT" >/dev/null 2>&1; then
		e2e_exec gw nft delete table ip "$E2E_KERNEL_NFT" || rc=1
	fi
	if command -v conntrack >/dev/null 2>&1; then
		e2e_exec gw conntrack -F >/dev/null 2>&1
		e2e_exec gw conntrack -F expect >/dev/null 2>&1
	fi
	for pid in "${E2E_KERNEL_EVPIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	E2E_KERNEL_EVPIDS=()
	for k in "${!E2E_KERNEL_SAVED[@]}"; do
		e2e_sysctl gw "$k" "${E2E_KERNEL_SAVED[$k]}" || rc=1
	done
	E2E_KERNEL_SAVED=()
	E2E_KERNEL_UP=0
	echo "kernel gateway down" >>"$E2E_LOG"
	e2e_log "kernel gateway down"
	return "$rc"
}
