#!/bin/bash
#
# tests/bench/run-bench.sh: sipnatd against the kernel's own NAT, in one run,
# on the standard end-to-end topology (tests/e2e/lib.sh).  Not part of the
# test suite: run it on demand, as root, on an otherwise idle machine.
#
# Usage:
#	sudo BUILDDIR=/path/to/build tests/bench/run-bench.sh
#
# BUILDDIR is the build directory (as for the e2e tests; default: the source
# tree) holding sipnatd, sipnatctl and tests/bench/udpblast; udpblast is
# built there with make if it is missing.  iperf3 is needed for the TCP
# figure (the row says n/a without it); perf is used only with BENCH_PERF=1.
#
# The two variants, on one topology:
#   sipnatd  sipnat-routes up and sipnatd in gw (the TUN data path);
#   kernel   no sipnatd, no TUN: ip_forward=1 and an nftables nat table
#            in gw with "oifname wan0 masquerade" (plain routing).
# The throughput measurements run BENCH_REPEAT trials each, the variants
# taking turns (sipnatd kernel, kernel sipnatd, ...: sipnatd is restarted at
# each switch), so that a pair of trials meets about the same load from
# other jobs on the machine; a figure is the variant's best trial, and the
# notes give every trial and the median of the paired ratios.  Memory and
# session rate run once per variant, on a fresh sipnatd.
#
# Measurements, in this order (lan1 10.0.0.11 -> wan1 198.51.100.10, all
# inside the test namespaces; wan1 counts UDP with an nftables counter in
# its input chain and drops it there, so that no ICMP port-unreachable comes
# back):
#   udp64_pps, udp1200_pps   UDP packets/s received at wan1 (packets
#             counted / the sender's duration) with 64- and 1200-byte
#             payloads, from udpblast (sendmmsg, batches of 64) over
#             BENCH_NSRC source ports for BENCH_SECS seconds; *_tx_pps is
#             the rate udpblast sent at (of the same trial),
#             udp1200_mbit_s the IP bit rate received.
#   udp64_2snd_pps  the same with two sending threads (-j 2, not pinned):
#             the kernel variant runs its whole path in the sender's
#             context, so one sender leaves a core idle; this shows what
#             the kernel's NAT does with both cores, and sipnatd with the
#             senders competing for its core.
#   tcp_gbit_s  iperf3 -t BENCH_IPERF_SECS, client in lan1, server in wan1.
#   mem_bytes_per_session    sipnatd: VmRSS growth over about
#             BENCH_MEM_SESSIONS new sessions (the same flows sent up to
#             BENCH_MEM_PASSES times until they all exist), divided by the
#             sessions made.  kernel: the nf_conntrack slab's object size from
#             /proc/slabinfo (extensions and hash not included).
#   mem_slab_bytes_per_session   the same for sipnatd; kernel: the growth
#             of /proc/meminfo's Slab (machine-wide) per conntrack entry,
#             which includes the entries' extensions (NAT, ...).
#   sess_per_s  new sessions/s: BENCH_SESS_FLOWS distinct flows (source port
#             x destination port), each sent once as fast as udpblast can;
#             packets counted at wan1 / the sender's duration.  The sessions
#             (sipnatctl stats) or gw's conntrack entries made per second
#             are in the notes.  One trial: the flows must stay new.
# Sessions live on (the UDP timeout is 3600 s in sipnatd and, where the
# kernel lets a namespace set it, in gw's conntrack).
#
# Environment (defaults in brackets):
#   BENCH_SECS [5]  BENCH_IPERF_SECS [10]  BENCH_NSRC [4]  BENCH_REPEAT [3]
#   BENCH_MEM_SESSIONS [100000]  BENCH_MEM_PASSES [20]
#   BENCH_SESS_FLOWS [150000]
#   BENCH_VARIANTS ["sipnatd kernel"]  (either, or both, in that order)
#   BENCH_PERF [0]  1: perf stat on sipnatd during the first 64-byte trial,
#                   and perf record's top symbols in the notes
#   BENCH_WAIT_IDLE [10]  seconds to wait, before each trial, for the
#                   machine to be idle for 2 s (others' jobs skew every
#                   figure); the notes warn about a trial that began busy,
#                   and the table shows the lowest idle share seen before a
#                   trial of the figure
#   BENCH_NICE [0]  a nice value (e.g. -10) for udpblast, iperf3 and
#                   sipnatd, for a machine that others are using
#   BENCH_PIN [1]   1: udpblast on CPU 0 and sipnatd on CPU 1 (taskset), so
#                   that the scheduler cannot put them on the same core;
#                   0: no pinning
#   and lib.sh's (E2E_KEEP=1 keeps the temporary directory, with logs).
# The sipnatd session limit is 262144, the same as the kernel's default
# nf_conntrack_max: the memory and session tests together must stay below
# it (both variants would start dropping new flows).
#
# Where the CPU goes: the veth pairs hand packets on in the sending
# context, so the kernel variant runs the whole path lan1 -> wan1 on the
# sender's core, while with sipnatd the sender's core carries lan1 -> TUN
# and sipnatd's core the rest (its sendmmsg runs inet and wan1's receive
# path as softirq).  The notes give the CPU split of every UDP trial.
#
# Output: progress lines ("# ..."), notes, and at the end a table, one line a
# figure: "NAME  sipnatd X  kernel Y  ratio X/Y  # idle S%/K%, paired M"
# (idle: the lowest idle share of the machine seen just before a trial of
# each variant; paired: the median of the trial-by-trial ratios).  Exit 0
# when it ran, 77 when it cannot run here, 1 on a failure of the set-up.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

BENCH_SECS=${BENCH_SECS:-5}
BENCH_IPERF_SECS=${BENCH_IPERF_SECS:-10}
BENCH_NSRC=${BENCH_NSRC:-4}
BENCH_MEM_SESSIONS=${BENCH_MEM_SESSIONS:-100000}
BENCH_MEM_PASSES=${BENCH_MEM_PASSES:-20}
BENCH_SESS_FLOWS=${BENCH_SESS_FLOWS:-150000}
BENCH_VARIANTS=${BENCH_VARIANTS:-"sipnatd kernel"}
BENCH_PERF=${BENCH_PERF:-0}
BENCH_PIN=${BENCH_PIN:-1}
BENCH_WAIT_IDLE=${BENCH_WAIT_IDLE:-10}
BENCH_NICE=${BENCH_NICE:-0}
BENCH_REPEAT=${BENCH_REPEAT:-3}
PIN_SENDER=()			# the command prefix that pins udpblast
BENCH_MAX_SESSIONS=262144

# Ports (destination ports at wan1, source ports at lan1).
PPS_DPORT=9000			# pps tests: one destination port
PPS_SPORT=40000			# .. BENCH_NSRC source ports from here
FLOW_DPORT=10000		# many-flow tests: destination ports from here
FLOW_NDPORT=50000		# .. 59999
MEM_SPORT=41000			# memory test's source ports
SESS_SPORT=42000		# session rate test's source ports
IPERF_PORT=5201

# lib.sh: quiet daemon, long UDP timeout (no session may expire mid-run).
E2E_LOG_LEVEL=info
E2E_TIMEOUTS="udp = 3600
tcp_established = 7440
tcp_transitory = 240
icmp = 60
fragment = 30"
# shellcheck source=../e2e/lib.sh
. "$BENCH_DIR/../e2e/lib.sh"

UDPBLAST=${UDPBLAST:-$BUILDDIR/tests/bench/udpblast}

declare -A R=()			# results: R[variant.name]=value
declare -A IDLE_BEFORE=()	# idle % of the machine before a measurement
declare -A T=()			# the figures of one trial
declare -A TV=()		# every trial: TV[variant.field.trial]
declare -A PAIR_MEDIAN=()	# median sipnatd/kernel ratio of paired trials
NOTES=()

note() {
	NOTES+=("$*")
	e2e_log "$*"
}

# Floating point in awk: calc EXPR (variables as -v pairs before it).
calc() {
	local expr=${*: -1}

	awk "${@:1:$#-1}" "BEGIN { printf $expr }" </dev/null
}

# The value of key=value in a line.
kv() {
	echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1
}

# --- wan1: the counter -----------------------------------------------------

wan1_setup() {
	local flows=$FLOW_DPORT-$((FLOW_DPORT + FLOW_NDPORT - 1))

	e2e_exec wan1 nft -f - <<EOF || fail "cannot load the counter in wan1"
table ip bench {
	counter udp_in { }
	chain input {
		type filter hook input priority filter; policy accept;
		udp dport { $PPS_DPORT, $flows } counter name udp_in drop
	}
}
EOF
}

# Packets the wan1 counter has seen.
wan1_count() {
	e2e_exec wan1 nft list counter ip bench udp_in |
	    awk '$1 == "packets" { print $2; exit }'
}

# --- helpers about the variant under test ----------------------------------

# A sipnatd counter or gauge from "sipnatctl stats".
sipnat_stat() {
	e2e_ctl stats 2>/dev/null | awk -v k="$1" '$1 == k { print $2; exit }'
}

sipnatd_rss_kb() {
	awk '$1 == "VmRSS:" { print $2 }' "/proc/$E2E_SIPNATD_PID/status"
}

# utime + stime of sipnatd, in clock ticks.
sipnatd_cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$E2E_SIPNATD_PID/stat"
}

ct_count() {
	e2e_exec gw cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null ||
	    echo 0
}

# Sessions of the variant: sipnatd's table, or gw's conntrack entries.
sessions_now() {
	if [ "$VARIANT" = sipnatd ]; then
		sipnat_stat sessions
	else
		ct_count
	fi
}

tun_dropped() {
	e2e_exec gw cat "/sys/class/net/$E2E_TUN/statistics/tx_dropped" \
	    2>/dev/null || echo 0
}

# Drops in the kernel on the way: veth/bridge backlog and device counters.
rx_dropped_all() {
	local ns sum=0 v

	for ns in gw inet wan1; do
		v=$(e2e_exec "$ns" sh -c 'cd /sys/class/net &&
		    cat ./*/statistics/rx_dropped ./*/statistics/tx_dropped' \
		    2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
		sum=$((sum + v))
	done
	echo "$sum"
}

# Drops in the per-CPU backlog (netdev_max_backlog): machine-wide.
softnet_dropped() {
	local sum=0 d

	while read -r _ d _; do
		sum=$((sum + 16#$d))
	done </proc/net/softnet_stat
	echo "$sum"
}

# /proc/slabinfo: "active_objs objsize" of nf_conntrack, or nothing.
ct_slab() {
	awk '$1 == "nf_conntrack" { print $2, $4; exit }' /proc/slabinfo \
	    2>/dev/null
}

meminfo_kb() {
	awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo
}

# The machine's CPU time so far: "user system idle softirq other" ticks.
cpu_ticks() {
	awk '$1 == "cpu" { print $2 + $3, $4, $5 + $6, $8, $7 + $9; exit }' \
	    /proc/stat
}

# Where the CPU time went between two cpu_ticks: "user U% sys S% ...",
# in percent of all CPUs.
cpu_split() {
	local a b t i d=()

	read -r -a a <<<"$1"
	read -r -a b <<<"$2"

	t=0
	for i in 0 1 2 3 4; do
		d[i]=$((b[i] - a[i]))
		t=$((t + d[i]))
	done
	[ "$t" -gt 0 ] || t=1
	echo "user $((d[0] * 100 / t))% sys $((d[1] * 100 / t))%" \
	    "softirq $((d[3] * 100 / t))% irq/steal $((d[4] * 100 / t))%" \
	    "idle $((d[2] * 100 / t))%"
}

# Others' jobs on the machine skew the figures: wait up to BENCH_WAIT_IDLE
# seconds for two seconds in a row with at least 85% of the CPU time idle,
# and keep the lowest idle share of the last second before a measurement.
wait_quiet() {
	local what=$1 end m0 m1 idle quiet=0

	end=$((SECONDS + BENCH_WAIT_IDLE))
	while :; do
		m0=$(cpu_ticks)
		sleep 1
		m1=$(cpu_ticks)
		idle=$(cpu_split "$m0" "$m1" | sed 's/.*idle \([0-9]*\)%.*/\1/')
		if [ "$idle" -ge 85 ]; then
			quiet=$((quiet + 1))
			[ "$quiet" -ge 2 ] && break
		else
			quiet=0
		fi
		[ "$SECONDS" -ge "$end" ] && break
	done
	if [ -z "${IDLE_BEFORE[$VARIANT.$what]:-}" ] ||
	    [ "$idle" -lt "${IDLE_BEFORE[$VARIANT.$what]}" ]; then
		IDLE_BEFORE[$VARIANT.$what]=$idle
	fi
	if [ "$idle" -lt 85 ]; then
		note "$VARIANT $what: WARNING: the machine was busy before it" \
		    "(only $idle% idle): this figure is low"
	fi
}

# Run udpblast in lan1; prints its result line.  Bounded by -t and timeout.
# Pinned to CPU 0 (BENCH_PIN) unless it runs several threads (-j).
blast() {
	local secs=$1 pin=("${PIN_SENDER[@]}")

	shift
	[[ " $* " == *" -j "* ]] && pin=()
	e2e_exec lan1 timeout -k 2 $((${secs%.*} + 20)) \
	    nice -n "$BENCH_NICE" "${pin[@]}" \
	    "$UDPBLAST" -q -d "$WAN1" -t "$secs" "$@" 2>&1 | tail -n 1
}

# --- the measurements ------------------------------------------------------

# Keep a trial's figure: FIELD of this trial, the best per variant in
# R[VARIANT.FIELD], every trial in TV[VARIANT.FIELD.TRIAL].  Returns 0
# when this trial is the variant's best so far.
record() {
	local field=$1 trial=$2 v=$3 old

	TV[$VARIANT.$field.$trial]=$v
	old=${R[$VARIANT.$field]:-}
	if [ -z "$old" ] || [ "$(calc -v a="$v" -v b="$old" \
	    '"%d", (a > b)')" = 1 ]; then
		R[$VARIANT.$field]=$v
		return 0
	fi
	return 1
}

# One trial of UDP packets/s: udp_pps_trial NAME TRIAL SIZE THREADS.
# Keeps NAME_pps (received) and, of the best trial, NAME_tx_pps and
# NAME_mbps.
udp_pps_trial() {
	local name=$1 trial=$2 size=$3 threads=$4 c0 c1 out sent el rx \
	    tun0 tun1 cpu0 cpu1 drop0 drop1 sn0 sn1 m0 m1 pid_perf=

	# Warm-up: neighbours, sessions/conntrack entries of these flows.
	blast 0.3 -p "$PPS_DPORT" -s "$PPS_SPORT" -n "$BENCH_NSRC" \
	    -j "$threads" -l "$size" >/dev/null
	wait_quiet "$name"
	c0=$(wan1_count)
	tun0=$(tun_dropped)
	drop0=$(rx_dropped_all)
	sn0=$(softnet_dropped)
	if [ "$VARIANT" = sipnatd ]; then
		cpu0=$(sipnatd_cpu_ticks)
		if [ "$BENCH_PERF" = 1 ] && [ "$size" = 64 ] &&
		    [ "$trial" = 1 ] &&
		    command -v perf >/dev/null 2>&1; then
			perf stat -p "$E2E_SIPNATD_PID" -o "$E2E_TMP/perf-stat.txt" \
			    -- sleep "$((${BENCH_SECS%.*} - 1))" >/dev/null 2>&1 &
			pid_perf=$!
			perf record -g -p "$E2E_SIPNATD_PID" \
			    -o "$E2E_TMP/perf.data" \
			    -- sleep "$((${BENCH_SECS%.*} - 1))" \
			    >/dev/null 2>&1 &
			E2E_PIDS+=("$!" "$pid_perf")
			pid_perf="$pid_perf $!"
		fi
	fi
	m0=$(cpu_ticks)
	out=$(blast "$BENCH_SECS" -p "$PPS_DPORT" -s "$PPS_SPORT" \
	    -n "$BENCH_NSRC" -j "$threads" -l "$size")
	m1=$(cpu_ticks)
	[ "$VARIANT" = sipnatd ] && cpu1=$(sipnatd_cpu_ticks)
	sleep 1
	c1=$(wan1_count)
	tun1=$(tun_dropped)
	drop1=$(rx_dropped_all)
	sn1=$(softnet_dropped)
	sent=$(kv sent "$out")
	el=$(kv elapsed "$out")
	if [ -z "$sent" ] || [ -z "$el" ]; then
		fail "udpblast: $out"
	fi
	rx=$((c1 - c0))
	T[rx]=$(calc -v n="$rx" -v t="$el" '"%.0f", n / t')
	T[tx]=$(calc -v n="$sent" -v t="$el" '"%.0f", n / t')
	T[mbps]=$(calc -v n="$rx" -v t="$el" -v s="$size" \
	    '"%.0f", n * (s + 28) * 8 / t / 1e6')
	if record "${name}_pps" "$trial" "${T[rx]}"; then
		R[$VARIANT.${name}_tx_pps]=${T[tx]}
		R[$VARIANT.${name}_mbps]=${T[mbps]}
	fi
	note "$VARIANT $name #$trial: sent $sent in ${el}s (${T[tx]}/s)," \
	    "received $rx (${T[rx]}/s), lost $((sent - rx))" \
	    "($(calc -v a="$sent" -v b="$rx" \
	    '"%.1f", a ? (a - b) * 100 / a : 0')%);" \
	    "drops: devices $((drop1 - drop0)), backlog $((sn1 - sn0))"
	note "$VARIANT $name #$trial: CPU (all $(nproc) CPUs):" \
	    "$(cpu_split "$m0" "$m1")"
	if [ "$VARIANT" = sipnatd ]; then
		note "$VARIANT $name #$trial: TUN tx_dropped $((tun1 - tun0))" \
		    "(the TUN queue to sipnatd full); sipnatd itself used" \
		    "$(calc -v c="$((cpu1 - cpu0))" -v hz="$(getconf CLK_TCK)" \
		    -v t="$el" '"%.0f", c / hz / t * 100')% of a core" \
		    "(softirq work it triggers is counted as softirq)"
		if [ -n "$pid_perf" ]; then
			# shellcheck disable=SC2086
			wait $pid_perf 2>/dev/null
		fi
	fi
}

# One trial of TCP throughput with iperf3: tcp_trial NAME TRIAL.
tcp_trial() {
	local name=$1 trial=$2 out gbps retr

	if ! command -v iperf3 >/dev/null 2>&1; then
		[ "$trial" = 1 ] && note "$VARIANT: no iperf3, no TCP figure"
		return
	fi
	e2e_bg wan1 "$E2E_TMP/iperf3-server-$VARIANT-$trial.log" \
	    nice -n "$BENCH_NICE" iperf3 -s -1 -p "$IPERF_PORT"
	if ! e2e_wait_for 5 e2e_exec wan1 sh -c \
	    "ss -Hltn 'sport = :$IPERF_PORT' | grep -q ."; then
		note "$VARIANT $name #$trial: the iperf3 server did not start"
		e2e_kill "$E2E_LAST_PID" 2
		return
	fi
	wait_quiet "$name"
	out=$(e2e_exec lan1 timeout -k 2 $((BENCH_IPERF_SECS + 30)) \
	    nice -n "$BENCH_NICE" iperf3 -c "$WAN1" -p "$IPERF_PORT" \
	    -t "$BENCH_IPERF_SECS" -J 2>/dev/null)
	e2e_kill "$E2E_LAST_PID" 2
	read -r gbps retr < <(echo "$out" | "$E2E_PYTHON" -c '
import json, sys
try:
    j = json.load(sys.stdin)
    print("%.2f %d" % (j["end"]["sum_received"]["bits_per_second"] / 1e9,
                       j["end"]["sum_sent"].get("retransmits", -1)))
except Exception:
    print("n/a -1")
')
	note "$VARIANT $name #$trial: $gbps Gbit/s received, $retr retransmits"
	[ "$gbps" = n/a ] || record "${name}_gbps" "$trial" "$gbps"
}

# Run a trial function BENCH_REPEAT times for every variant, switching
# variants between runs (A B, B A, A B, ...) so that each pair of trials
# meets about the same load from others; then note every trial and the
# ratio of each pair: interleaved FIELD FUNCTION NAME ARGS...
interleaved() {
	local field=$1 fn=$2 name=$3 i v order list a b med ratios=''

	shift 3
	for ((i = 1; i <= BENCH_REPEAT; i++)); do
		order=$BENCH_VARIANTS
		if [ $((i % 2)) = 0 ]; then
			order=$(echo "$BENCH_VARIANTS" | tr ' ' '\n' | tac |
			    tr '\n' ' ')
		fi
		for v in $order; do
			use_variant "$v"
			"$fn" "$name" "$i" "$@"
		done
	done
	for v in $BENCH_VARIANTS; do
		list=
		for ((i = 1; i <= BENCH_REPEAT; i++)); do
			list="$list ${TV[$v.$field.$i]:-n/a}"
		done
		note "$v $field, every trial:$list (best ${R[$v.$field]:-n/a})"
	done
	for ((i = 1; i <= BENCH_REPEAT; i++)); do
		a=${TV[sipnatd.$field.$i]:-}
		b=${TV[kernel.$field.$i]:-}
		if [ -n "$a" ] && [ -n "$b" ]; then
			ratios="$ratios $(calc -v a="$a" -v b="$b" \
			    '"%.2f", (b > 0 ? a / b : 0)')"
		fi
	done
	if [ -n "$ratios" ]; then
		med=$(echo "$ratios" | tr ' ' '\n' | grep . | sort -n |
		    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]
			else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
		PAIR_MEDIAN[$field]=$med
		note "$field sipnatd/kernel, trial by trial:$ratios" \
		    "(median $med)"
	fi
}

# Resident memory per session at about BENCH_MEM_SESSIONS sessions.
mem_per_session() {
	local nsrc s0 s1 rss0 rss1 m0 m1 pass out objs0 objs1 \
	    objsize made

	nsrc=$(((BENCH_MEM_SESSIONS + FLOW_NDPORT - 1) / FLOW_NDPORT))
	wait_quiet mem
	s0=$(sessions_now)
	if [ "$VARIANT" = sipnatd ]; then
		rss0=$(sipnatd_rss_kb)
	else
		read -r objs0 objsize < <(ct_slab)
		m0=$(meminfo_kb Slab)
	fi
	# The same flows again until they all exist (the first pass loses
	# some where the NAT is slower than the sender).
	for ((pass = 1; pass <= BENCH_MEM_PASSES; pass++)); do
		out=$(blast 20 -o -p "$FLOW_DPORT" -r "$FLOW_NDPORT" \
		    -s "$MEM_SPORT" -n "$nsrc" -c "$BENCH_MEM_SESSIONS")
		sleep 1
		s1=$(sessions_now)
		# (other entries may expire meanwhile: allow for a few)
		[ $((s1 - s0)) -ge $((BENCH_MEM_SESSIONS * 999 / 1000)) ] &&
		    break
	done
	made=$((s1 - s0))
	[ "$pass" -gt "$BENCH_MEM_PASSES" ] && pass=$BENCH_MEM_PASSES
	note "$VARIANT mem: $made sessions made in $pass passes of" \
	    "$BENCH_MEM_SESSIONS flows"
	[ "$made" -gt 0 ] || { note "$VARIANT mem: no session made"; return; }
	if [ "$VARIANT" = sipnatd ]; then
		rss1=$(sipnatd_rss_kb)
		R[$VARIANT.mem_bytes_per_session]=$(calc -v a="$rss0" \
		    -v b="$rss1" -v n="$made" '"%.0f", (b - a) * 1024 / n')
		R[$VARIANT.mem_all_bytes_per_session]=${R[$VARIANT.mem_bytes_per_session]}
		note "$VARIANT mem: VmRSS $rss0 kB -> $rss1 kB," \
		    "${R[$VARIANT.mem_bytes_per_session]} bytes a session" \
		    "(the hash bucket array, 8 bytes x 4 x limits.sessions" \
		    "rounded up to a power of two = $((BUCKETS * 8 / 1024)) kB," \
		    "is allocated at start but only becomes resident as it is" \
		    "touched: up to $(calc -v b="$BUCKETS" -v n="$made" \
		    '"%.0f", b * 8 / n') bytes a session of this figure)"
	else
		read -r objs1 objsize < <(ct_slab)
		m1=$(meminfo_kb Slab)
		R[$VARIANT.mem_all_bytes_per_session]=$(calc -v a="$m0" \
		    -v b="$m1" -v n="$made" '"%.0f", (b - a) * 1024 / n')
		if [ -n "$objsize" ]; then
			R[$VARIANT.mem_bytes_per_session]=$objsize
			note "$VARIANT mem: nf_conntrack slab objsize $objsize," \
			    "active objects $objs0 -> $objs1" \
			    "($(calc -v a="$objs0" -v b="$objs1" -v s="$objsize" \
			    '"%.0f", (b - a) * s / 1024') kB);" \
			    "/proc/meminfo Slab $m0 kB -> $m1 kB =" \
			    "${R[$VARIANT.mem_all_bytes_per_session]} bytes an" \
			    "entry (machine-wide, so noisy; conntrack extensions" \
			    "included, the preallocated hash not)"
		else
			R[$VARIANT.mem_bytes_per_session]=n/a
			note "$VARIANT mem: /proc/slabinfo has no nf_conntrack"
		fi
	fi
}

# New sessions per second.
sess_rate() {
	local nsrc c0 c1 s0 s1 out sent el rx tun0 tun1

	nsrc=$(((BENCH_SESS_FLOWS + FLOW_NDPORT - 1) / FLOW_NDPORT))
	wait_quiet sess
	c0=$(wan1_count)
	s0=$(sessions_now)
	tun0=$(tun_dropped)
	out=$(blast 20 -o -p "$FLOW_DPORT" -r "$FLOW_NDPORT" \
	    -s "$SESS_SPORT" -n "$nsrc" -c "$BENCH_SESS_FLOWS")
	sleep 1
	c1=$(wan1_count)
	s1=$(sessions_now)
	tun1=$(tun_dropped)
	sent=$(kv sent "$out")
	el=$(kv elapsed "$out")
	if [ -z "$sent" ] || [ -z "$el" ]; then
		fail "udpblast: $out"
	fi
	rx=$((c1 - c0))
	R[$VARIANT.sess_per_s]=$(calc -v n="$rx" -v t="$el" '"%.0f", n / t')
	R[$VARIANT.sess_tx_per_s]=$(calc -v n="$sent" -v t="$el" '"%.0f", n / t')
	note "$VARIANT sessions: $sent new flows sent in ${el}s" \
	    "(${R[$VARIANT.sess_tx_per_s]}/s), $rx received" \
	    "(${R[$VARIANT.sess_per_s]}/s), $((s1 - s0)) $([ "$VARIANT" = \
	    sipnatd ] && echo sessions || echo "conntrack entries") made" \
	    "($(calc -v n="$((s1 - s0))" -v t="$el" '"%.0f", n / t')/s)" \
	    "$([ "$VARIANT" = sipnatd ] && echo ", TUN tx_dropped $((tun1 - tun0))")"
}

CUR_VARIANT=
SIPNATD_CONF=

# Make VARIANT the one in place; with "fresh", restart it even if it is.
use_variant() {
	local v=$1 fresh=${2:-}

	if [ "$CUR_VARIANT" != "$v" ] || [ -n "$fresh" ]; then
		[ -n "$CUR_VARIANT" ] && "down_$CUR_VARIANT"
		CUR_VARIANT=
		"up_$v"
		CUR_VARIANT=$v
	fi
	VARIANT=$v
}

up_sipnatd() {
	e2e_start_sipnatd "$SIPNATD_CONF" >/dev/null
	[ "$(cat "/proc/$E2E_SIPNATD_PID/comm" 2>/dev/null)" = sipnatd ] ||
	    fail "pid $E2E_SIPNATD_PID is not sipnatd"
	if [ ${#PIN_SENDER[@]} -gt 0 ]; then
		taskset -pc 1 "$E2E_SIPNATD_PID" >/dev/null ||
		    fail "cannot pin sipnatd to CPU 1"
	fi
	if [ "$BENCH_NICE" != 0 ]; then
		renice -n "$BENCH_NICE" -p "$E2E_SIPNATD_PID" >/dev/null ||
		    fail "cannot renice sipnatd"
	fi
}

down_sipnatd() {
	e2e_stop_sipnatd || fail "sipnatd exited with an error"
}

up_kernel() {
	e2e_sysctl gw net.ipv4.ip_forward 1 || fail "cannot enable forwarding"
	e2e_exec gw nft -f - <<'EOF' || fail "cannot load the nat table in gw"
table ip benchnat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan0" masquerade
	}
}
EOF
	# The same idle timeout as sipnatd's (if this kernel lets a namespace
	# set it).
	e2e_sysctl gw net.netfilter.nf_conntrack_udp_timeout 3600 \
	    2>/dev/null || true
	e2e_sysctl gw net.netfilter.nf_conntrack_udp_timeout_stream 3600 \
	    2>/dev/null || true
}

down_kernel() {
	e2e_exec gw nft delete table ip benchnat ||
	    fail "cannot delete the nat table in gw"
	e2e_sysctl gw net.ipv4.ip_forward 0
}

# What perf saw of sipnatd in the first 64-byte trial (BENCH_PERF=1).
PERF_SYMS="__sendmmsg|read|handle_softirqs|tun_do_read|nat_input|epoll_wait"
PERF_SYMS="$PERF_SYMS|uplink_flush|tun_read_cb"
perf_notes() {
	if [ -s "$E2E_TMP/perf-stat.txt" ]; then
		note "perf stat on sipnatd during udp64 #1:"
		while IFS= read -r l; do
			note "  $l"
		done < <(grep -E 'task-clock|context-switches|cpu-migrations' \
		    "$E2E_TMP/perf-stat.txt" | sed 's/^ *//; s/  */ /g')
	fi
	[ -s "$E2E_TMP/perf.data" ] || return 0
	note "perf record on sipnatd during udp64 #1, top symbols (self):"
	while IFS= read -r l; do
		note "  $l"
	done < <(perf report -i "$E2E_TMP/perf.data" --no-children \
	    --stdio --sort sym 2>/dev/null | grep -E '^ +[0-9.]+%' |
	    head -n 25 | sed 's/^ *//')
	note "perf record on sipnatd during udp64 #1, where the time went" \
	    "(with children):"
	while IFS= read -r l; do
		note "  $l"
	done < <(perf report -i "$E2E_TMP/perf.data" --children \
	    --stdio --sort sym 2>/dev/null | grep -E '^ +[0-9.]+%' |
	    grep -E " ($PERF_SYMS)\$" |
	    sed 's/^ *//')
}

# --- main ------------------------------------------------------------------

e2e_require_root taskset
for v in $BENCH_VARIANTS; do
	case $v in
	sipnatd) e2e_require_sipnatd ;;
	kernel) ;;
	*) skip "unknown variant $v in BENCH_VARIANTS" ;;
	esac
done
if [ ! -x "$UDPBLAST" ]; then
	make -C "$BUILDDIR" tests/bench/udpblast >/dev/null 2>&1 ||
	    skip "udpblast not built ($UDPBLAST)"
fi
[ $((BENCH_MEM_SESSIONS + BENCH_SESS_FLOWS + 1000)) -le \
    "$BENCH_MAX_SESSIONS" ] ||
    skip "BENCH_MEM_SESSIONS + BENCH_SESS_FLOWS must stay below" \
    "$BENCH_MAX_SESSIONS"
[ $((BENCH_MEM_SESSIONS / FLOW_NDPORT)) -lt $((SESS_SPORT - MEM_SPORT)) ] ||
    skip "BENCH_MEM_SESSIONS too large"

if [ "$BENCH_PIN" = 1 ] && [ "$(nproc)" -ge 2 ] &&
    command -v taskset >/dev/null 2>&1; then
	PIN_SENDER=(taskset -c 0)
fi

e2e_setup
wan1_setup
if [ ${#PIN_SENDER[@]} -gt 0 ]; then
	note "machine: $(nproc) CPUs, kernel $(uname -r); udpblast pinned" \
	    "to CPU 0 (one thread), sipnatd to CPU 1"
else
	note "machine: $(nproc) CPUs, kernel $(uname -r); nothing pinned"
fi
m0=$(cpu_ticks)
sleep 2
m1=$(cpu_ticks)
note "before the run, for 2 s: $(cpu_split "$m0" "$m1")"

SIPNATD_CONF=$E2E_TMP/sipnat.ini
BUCKETS=1024
while [ "$BUCKETS" -lt $((BENCH_MAX_SESSIONS * 4)) ]; do
	BUCKETS=$((BUCKETS * 2))
done
if [[ " $BENCH_VARIANTS " == *" sipnatd "* ]]; then
	e2e_write_conf "$SIPNATD_CONF" \
	    "limits.sessions = $BENCH_MAX_SESSIONS" \
	    "limits.sessions_per_host = $BENCH_MAX_SESSIONS" ||
	    fail "cannot write the sipnatd config"
fi
if [[ " $BENCH_VARIANTS " == *" kernel "* ]]; then
	note "kernel: nf_conntrack_max" \
	    "$(cat /proc/sys/net/netfilter/nf_conntrack_max 2>/dev/null)," \
	    "buckets $(cat /proc/sys/net/netfilter/nf_conntrack_buckets \
	    2>/dev/null)"
fi

# Throughput: trials of the variants in turn.
e2e_log "=== UDP, 64 bytes"
interleaved udp64_pps udp_pps_trial udp64 64 1
e2e_log "=== UDP, 1200 bytes"
interleaved udp1200_pps udp_pps_trial udp1200 1200 1
e2e_log "=== UDP, 64 bytes, two senders"
interleaved udp64_2snd_pps udp_pps_trial udp64_2snd 64 2
e2e_log "=== TCP"
interleaved tcp_gbps tcp_trial tcp

# Memory and new sessions: once each, on a freshly started variant.
for v in $BENCH_VARIANTS; do
	e2e_log "=== $v: memory and new sessions"
	use_variant "$v" fresh
	if [ "$v" = sipnatd ]; then
		note "sipnatd: pid $E2E_SIPNATD_PID, VmRSS $(sipnatd_rss_kb) kB" \
		    "at start"
	fi
	mem_per_session
	sess_rate
	if [ "$v" = sipnatd ]; then
		e2e_log "sipnatd stats:"
		e2e_ctl stats | grep -Ev ' 0$' | sed 's/^/#   /'
	fi
done
[ -n "$CUR_VARIANT" ] && "down_$CUR_VARIANT"
CUR_VARIANT=
[ "$BENCH_PERF" = 1 ] && perf_notes

# The table.
row() {
	local name=$1 key=$2 what=$3 a b ratio pair

	a=${R[sipnatd.$key]:-n/a}
	b=${R[kernel.$key]:-n/a}
	ratio=n/a
	if [[ $a =~ ^[0-9.]+$ ]] && [[ $b =~ ^[0-9.]+$ ]] &&
	    [ "$(calc -v b="$b" '"%d", (b > 0)')" = 1 ]; then
		ratio=$(calc -v a="$a" -v b="$b" '"%.2f", a / b')
	fi
	pair=
	if [ -n "${PAIR_MEDIAN[$key]:-}" ]; then
		pair=", paired ${PAIR_MEDIAN[$key]}"
	fi
	printf '%-26s sipnatd %-9s kernel %-9s ratio %-5s # idle %s/%s%s\n' \
	    "$name" "$a" "$b" "$ratio" "${IDLE_BEFORE[sipnatd.$what]:--}%" \
	    "${IDLE_BEFORE[kernel.$what]:--}%" "$pair"
}

echo
echo "== notes"
for n in "${NOTES[@]}"; do
	echo "  $n"
done
echo
echo "== results (sipnatd against the kernel's nftables masquerade)"
row udp64_pps udp64_pps udp64
row udp64_tx_pps udp64_tx_pps udp64
row udp1200_pps udp1200_pps udp1200
row udp1200_tx_pps udp1200_tx_pps udp1200
row udp1200_mbit_s udp1200_mbps udp1200
row udp64_2snd_pps udp64_2snd_pps udp64_2snd
row udp64_2snd_tx_pps udp64_2snd_tx_pps udp64_2snd
row tcp_gbit_s tcp_gbps tcp
row sess_per_s sess_per_s sess
row sess_tx_per_s sess_tx_per_s sess
row mem_bytes_per_session mem_bytes_per_session mem
row mem_slab_bytes_per_session mem_all_bytes_per_session mem
exit 0
