#!/bin/bash
#
# compare-kernel.sh: run each SIP end-to-end test twice, once against
# sipnatd (E2E_GATEWAY=sipnatd) and once against the Linux kernel's own NAT
# and SIP helper, nf_conntrack_sip/nf_nat_sip (E2E_GATEWAY=kernel, see
# e2e_kernel_start in lib.sh), and print a table of the results with the
# reason for every failure.  Run on demand, as root; not part of the suite.
#
# Usage: compare-kernel.sh [-n LINES] [-o DIR] [-t SECS] [TEST...]
#   TEST      test scripts or scenario names (default: tests/e2e/test-sip-*.sh)
#   -n LINES  lines of a failed test's output shown under the table (12)
#   -o DIR    where the outputs go (default: a new directory under /tmp):
#             DIR/NAME.MODE.log, the test's output, and DIR/NAME.MODE/, its
#             whole temporary directory (sipp traces, the gateway's log)
#   -t SECS   time limit per run (300)
#
# BUILDDIR, SRCDIR and the other variables of lib.sh are passed through.
# Exit status: 0 when every sipnatd run passed or skipped, 1 otherwise
# (the kernel's failures are what is being measured, not errors).

set -u

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRCDIR=${SRCDIR:-$(cd "$E2E_DIR/../.." && pwd)}
BUILDDIR=${BUILDDIR:-$SRCDIR}
export SRCDIR BUILDDIR

LINES=12
OUT=
LIMIT=300
MODES="sipnatd kernel"

usage() {
	echo "usage: $0 [-n LINES] [-o DIR] [-t SECS] [TEST...]" >&2
	exit 2
}

while getopts n:o:t:h opt; do
	case $opt in
	n) LINES=$OPTARG ;;
	o) OUT=$OPTARG ;;
	t) LIMIT=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))

[ "$(id -u)" = 0 ] || {
	echo "$0: needs root (network namespaces)" >&2
	exit 77
}

# The tests to run: arguments (paths or names like test-sip-call or call),
# else every test-sip-*.sh there is now.
TESTS=()
if [ $# -gt 0 ]; then
	for t in "$@"; do
		for f in "$t" "$E2E_DIR/$t" "$E2E_DIR/$t.sh" "$E2E_DIR/test-sip-$t.sh"; do
			if [ -f "$f" ]; then
				TESTS+=("$f")
				continue 2
			fi
		done
		echo "$0: no test $t" >&2
		exit 2
	done
else
	shopt -s nullglob
	TESTS=("$E2E_DIR"/test-sip-*.sh)
	shopt -u nullglob
fi
if [ ${#TESTS[@]} = 0 ]; then
	echo "$0: no tests/e2e/test-sip-*.sh to run" >&2
	exit 77
fi

if [ -z "$OUT" ]; then
	OUT=$(mktemp -d "${TMPDIR:-/tmp}/sipnat-compare.XXXXXX") || exit 1
else
	mkdir -p "$OUT" || exit 1
fi

# The result word for an exit status.
result() {
	case $1 in
	0) echo pass ;;
	77) echo skip ;;
	124) echo TIMEOUT ;;
	*) echo FAIL ;;
	esac
}

declare -A RES=()
bad=0
for t in "${TESTS[@]}"; do
	name=$(basename "$t" .sh)
	for mode in $MODES; do
		# Each run keeps its whole E2E_TMP (traces, gateway log) in DIR.
		dir=$OUT/$name.$mode
		rm -rf "$dir"
		mkdir -p "$dir" || exit 1
		printf '%-28s %-8s ... ' "$name" "$mode"
		start=$SECONDS
		E2E_GATEWAY=$mode E2E_KEEP=1 TMPDIR=$dir \
		    timeout -k 10 "$LIMIT" bash "$t" >"$dir.log" 2>&1 </dev/null
		rc=$?
		RES[$name.$mode]=$(result "$rc")
		echo "${RES[$name.$mode]} ($((SECONDS - start))s)"
		if [ "$mode" = sipnatd ] && [ "${RES[$name.$mode]}" != pass ] &&
		    [ "${RES[$name.$mode]}" != skip ]; then
			bad=1
		fi
	done
done

# The table.
echo
printf '| %-26s | %-8s | %-8s |\n' scenario sipnatd kernel
printf '|%s|%s|%s|\n' "----------------------------" "----------" "----------"
for t in "${TESTS[@]}"; do
	name=$(basename "$t" .sh)
	printf '| %-26s | %-8s | %-8s |\n' "${name#test-}" \
	    "${RES[$name.sipnatd]}" "${RES[$name.kernel]}"
done

# Why each run that did not pass failed (or skipped): the test's verdict
# and what it printed just before; for sipnatd the tail of its log that
# fail() appends; for the kernel, every packet its SIP helper dropped, with
# the helper's own reason (nf_ct_helper_log, copied into the gateway log).
for t in "${TESTS[@]}"; do
	name=$(basename "$t" .sh)
	for mode in $MODES; do
		dir=$OUT/$name.$mode
		log=$dir.log
		gwlog=
		for f in "$dir"/sipnat-e2e.*/sipnatd.log; do
			[ -f "$f" ] && gwlog=$f && break
		done
		drops=
		if [ "$mode" = kernel ] && [ -n "$gwlog" ]; then
			drops=$(grep -F 'kernel: nf_ct_' "$gwlog" | cut -f 2-)
		fi
		[ "${RES[$name.$mode]}" = pass ] && [ -z "$drops" ] && continue
		echo
		echo "== ${name#test-} with $mode: ${RES[$name.$mode]}"
		if grep -q '^E2E: e2e_ctl ' "$log"; then
			echo "   (the test calls sipnatctl unguarded: a bug in the test, not in the gateway)"
		fi
		n=$(grep -n -m 1 -E '^(FAIL|SKIP)' "$log" | cut -d: -f1)
		if [ "${RES[$name.$mode]}" = pass ]; then
			:
		elif [ -n "$n" ]; then
			head -n "$n" "$log" | tail -n "$LINES" | sed 's/^/   /'
			if [ "$mode" = sipnatd ] && [ "$(wc -l <"$log")" -gt "$n" ]; then
				echo "   ..."
				tail -n +"$((n + 1))" "$log" | grep -v '^# kept ' |
				    tail -n "$LINES" | sed 's/^/   /'
			fi
		else
			grep -v '^# kept ' "$log" | tail -n "$LINES" | sed 's/^/   /'
		fi
		if [ -n "$drops" ]; then
			echo "   packets the kernel's SIP helper dropped:"
			sed 's/^/     /' <<<"$drops"
		fi
		if [ -n "$gwlog" ]; then
			echo "   output: $log; traces: ${gwlog%/*}"
		else
			echo "   output: $log"
		fi
	done
done
echo
echo "outputs in $OUT"
exit "$bad"
