#!/bin/bash
#
# test-metrics.sh: the Prometheus endpoint ([metrics] listen) during an
# outbound call through the SIP ALG (the phone, sipp in lan1 with audio on
# 10.0.0.11:6000, calls the provider, sipp in wan1 with audio on
# 198.51.100.10:7000, RTP both ways for a while, then none until the BYE).
# sipnatd listens on the gateway's LAN address 10.0.0.1:9160; lan1 scrapes
# it with curl.  Asserts:
#  - every answer to GET /metrics is 200, text/plain; version=0.0.4, and
#    valid Prometheus text format: every line a "# HELP", "# TYPE" or
#    comment line or a sample "name{label="value",...} value" with legal
#    names, escapes and a number; at most one TYPE (and HELP) per family,
#    the TYPE before the family's samples, a family's samples together, no
#    series twice, a newline at the end;
#  - sipnat_sessions is a gauge, sipnat_drops_total a counter with one
#    sample per reason, the reasons those of sipnatctl stats' drop.* keys;
#    the SIP helper's values are typed too: the counter
#    sipnat_sip_alarms_one_way_audio_total, the gauges sipnat_sip_dialogs
#    and sipnat_tcp_stream_open;
#  - before the call sipnat_sip_dialogs is 0 and the per-call families
#    (sipnat_rtp_packets, _lost, _jitter_seconds, _one_way_alarm) have no
#    series;
#  - during the call (RTP flowing) sipnat_sessions > 0, sipnat_sip_dialogs
#    is 1, sipnat_rtp_packets{call_id="<the Call-ID>",media="audio",
#    direction="in"} and direction="out" are > 0, and sipnat_rtp_lost,
#    sipnat_rtp_jitter_seconds and sipnat_rtp_one_way_alarm have both
#    directions of the call;
#  - once the RTP has stopped (the call still up), a scrape, sipnatctl -j
#    stats and -j calls, and a second scrape agree: every key of sipnatctl
#    stats is a sample (sipnat_KEY, sipnat_KEY_total, or for drop.REASON
#    sipnat_drops_total{reason="REASON"}) whose value lies between the two
#    scrapes' (equal when nothing moved), and the call's RTP packets, loss
#    and jitter are those sipnatctl shows;
#  - other paths answer 404 and a POST to /metrics is refused (no metrics
#    in the answer);
#  - after the BYE no series names the Call-ID and sipnat_sip_dialogs is 0;
#  - with a call of two audio streams (an INVITE from lan1 with two
#    m=audio lines, not answered) the exposition is still valid (no series
#    twice) with 16 series for that call, whatever label tells the streams
#    apart (the checks above look series up by the labels they need, so an
#    extra label does not break them); a CANCEL ends it;
#  - a reload that changes metrics.listen succeeds, logs that it needs a
#    restart, keeps serving on the old address and does not listen on the
#    new one (and sipnat_reloads_total counts it);
#  - sipnatd exits cleanly (no sanitizer report);
#  - sipnatd -t refuses a malformed metrics.listen, and sipnatd refuses to
#    start (exits non-zero, saying why) when it cannot listen: on an
#    address the gateway does not have, or on a port taken already.

. "$(dirname "$0")/lib.sh"

e2e_require_root sipp ss curl
e2e_require_sipnatd
e2e_is_sipnatd || skip "the metrics endpoint is sipnatd's (E2E_GATEWAY=$E2E_GATEWAY)"

FLOW=$E2E_DIR/flow.py
SIPDIR=$E2E_DIR/sip
PHONE_RTP=6000
PROV_RTP=7000
CALL_MS=5000		# how long the call lasts once answered
METRICS=$GW_LAN:9160
METRICS_NEW=127.0.0.1:9161	# what the reload asks for

cd "$E2E_TMP" || fail "cannot enter $E2E_TMP"

. "$E2E_DIR/sip-lib.sh"

# The format check: reads an exposition on stdin, prints one line per
# sample, "KEY<TAB>VALUE" (KEY: name{labels sorted}) and per family
# "#TYPE<TAB>NAME<TAB>TYPE", or says what is wrong and exits 1.
cat >"$E2E_TMP/promcheck.py" <<'EOF'
import re, sys

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LNAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
text = sys.stdin.buffer.read()
errors = []


def err(n, line, what):
    errors.append("line %d: %s: %r" % (n, what, line))


try:
    text = text.decode("utf-8")
except UnicodeDecodeError:
    sys.exit("not UTF-8")
if not text.endswith("\n"):
    errors.append("no newline at the end")
types, helps, seen, done = {}, set(), {}, set()
current = None
for n, line in enumerate(text.split("\n")[:-1], 1):
    if line.startswith("#"):
        f = line.split(None, 3)
        if len(f) >= 3 and f[1] in ("HELP", "TYPE"):
            name = f[2]
            if not NAME.fullmatch(name):
                err(n, line, "bad metric name")
            if f[1] == "HELP":
                if name in helps:
                    err(n, line, "second HELP")
                helps.add(name)
            else:
                if len(f) != 4 or f[3] not in TYPES:
                    err(n, line, "bad TYPE")
                elif name in types:
                    err(n, line, "second TYPE")
                elif name in done or name == current:
                    err(n, line, "TYPE after the family's samples")
                else:
                    types[name] = f[3]
        continue
    if line.strip() == "":
        continue
    m = NAME.match(line)
    if not m:
        err(n, line, "no metric name")
        continue
    name, i, labels = m.group(0), m.end(), []
    if line[i:i + 1] == "{":
        i += 1
        while True:
            while line[i:i + 1] == " ":
                i += 1
            if line[i:i + 1] == "}":
                i += 1
                break
            lm = LNAME.match(line, i)
            if not lm or line[lm.end():lm.end() + 2] != '="':
                err(n, line, "bad label")
                break
            i, v = lm.end() + 2, ""
            while i < len(line) and line[i] != '"':
                if line[i] == "\\":
                    if line[i + 1:i + 2] not in ("\\", '"', "n"):
                        err(n, line, "bad escape")
                    v += line[i:i + 2]
                    i += 2
                else:
                    v += line[i]
                    i += 1
            if i >= len(line):
                err(n, line, "unterminated label value")
                break
            i += 1
            if lm.group(0) in [k for k, _ in labels]:
                err(n, line, "label twice")
            labels.append((lm.group(0), v))
            if line[i:i + 1] == ",":
                i += 1
            elif line[i:i + 1] != "}":
                err(n, line, "bad label list")
                break
    rest = line[i:]
    f = rest.split()
    if not rest.startswith(" ") or len(f) not in (1, 2):
        err(n, line, "not 'name{labels} value'")
        continue
    try:
        if "_" in f[0]:
            raise ValueError
        val = float(f[0])
    except ValueError:
        err(n, line, "bad value")
        continue
    if len(f) == 2 and not re.fullmatch(r"-?[0-9]+", f[1]):
        err(n, line, "bad timestamp")
    fam = name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and \
                types.get(name[:-len(suffix)]) in ("histogram", "summary"):
            fam = name[:-len(suffix)]
    if fam != current:
        if fam in done:
            err(n, line, "the family's samples are not together")
        if current is not None:
            done.add(current)
        current = fam
    key = name + "{" + ",".join('%s="%s"' % kv for kv in sorted(labels)) + "}"
    if key in seen:
        err(n, line, "series twice")
    seen[key] = val
if errors:
    print("\n".join(errors[:20]), file=sys.stderr)
    sys.exit(1)
for k, v in seen.items():
    print("%s\t%s" % (k, repr(v) if not v.is_integer() else int(v)))
for k, t in types.items():
    print("#TYPE\t%s\t%s" % (k, t))
EOF

# GET (or METHOD) http://ADDR/PATH from lan1 (or gw when ADDR is
# 127.0.0.1): the body into FILE, prints "CODE CONTENT-TYPE".
http() {
	local path=$1 file=$2 method=${3:-GET} addr=${4:-$METRICS} ns=lan1

	[ "${addr%%:*}" = 127.0.0.1 ] && ns=gw
	e2e_exec "$ns" curl -sS --max-time 5 -X "$method" -o "$file" \
	    -w '%{http_code} %{content_type}' "http://$addr$path"
}

# Scrape /metrics into NAME.prom, check it, keep the samples in NAME.s.
# With "later", an invalid format is only noted in LATER (the test goes on
# and fails at the end) and the return status is 1.
LATER=
scrape() {
	local name=$1 later=${2:-} out

	out=$(http /metrics "$E2E_TMP/$name.prom") ||
	    fail "$name: curl http://$METRICS/metrics failed: $out"
	[ "$out" = "200 text/plain; version=0.0.4" ] ||
	    fail "$name: GET /metrics answered '$out'"
	"$E2E_PYTHON" "$E2E_TMP/promcheck.py" <"$E2E_TMP/$name.prom" \
	    >"$E2E_TMP/$name.s" 2>"$E2E_TMP/$name.err" || {
		cat "$E2E_TMP/$name.err"
		out="$name: /metrics is not valid Prometheus text format (above; $E2E_TMP/$name.prom)"
		[ -n "$later" ] || fail "$out"
		echo "# LATER FAIL: $out"
		LATER="$LATER${LATER:+; }$out"
		return 1
	}
}

# The value of a series (KEY as promcheck prints it) in a scrape, or "".
val() {
	awk -F'\t' -v k="$2" '$1 == k { print $2; exit }' "$E2E_TMP/$1.s"
}

# The type of a family in a scrape, or "".
type_of() {
	awk -F'\t' -v k="$2" '$1 == "#TYPE" && $2 == k { print $3; exit }' "$E2E_TMP/$1.s"
}

# The value of the one series of a family in a scrape whose labels include
# each LABEL=VALUE given (others may be there too); nothing and status 1
# if there is none or more than one.
sval() {
	local name=$1 fam=$2

	shift 2
	awk -F'\t' -v fam="$fam" -v want="$*" '
	index($1, fam "{") == 1 {
		lab = substr($1, length(fam) + 1)
		n = split(want, w, " ")
		for (i = 1; i <= n; i++) {
			k = substr(w[i], 1, index(w[i], "=") - 1)
			t = k "=\"" substr(w[i], length(k) + 2) "\""
			if (!index(lab, "{" t ",") && !index(lab, "," t ",") &&
			    !index(lab, "{" t "}") && !index(lab, "," t "}"))
				next
		}
		found++
		v = $2
	}
	END { if (found == 1) print v; exit found != 1 }' "$E2E_TMP/$name.s"
}

# How many series of a scrape name the Call-ID.
call_series() {
	grep -cF "call_id=\"$2\"" "$E2E_TMP/$1.s"
}

# Is a sample's value (a number) > 0?
positive() {
	awk -v v="$1" 'BEGIN { exit !(v != "" && v + 0 > 0) }'
}

# --- set-up

e2e_setup
e2e_write_conf "$E2E_TMP/sipnat.ini" "metrics.listen = $METRICS" ||
    fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"
grep -q "metrics on http://$METRICS/metrics" "$E2E_LOG" ||
    fail "sipnatd does not log that it serves http://$METRICS/metrics"

# --- before the call
scrape idle
[ "$(type_of idle sipnat_sessions)" = gauge ] ||
    fail "sipnat_sessions is '$(type_of idle sipnat_sessions)', not a gauge"
[ "$(type_of idle sipnat_drops_total)" = counter ] ||
    fail "sipnat_drops_total is '$(type_of idle sipnat_drops_total)', not a counter"
reasons=$(awk -F'\t' '$1 ~ /^sipnat_drops_total\{reason="/ {
	sub(/^sipnat_drops_total\{reason="/, "", $1); sub(/"\}$/, "", $1); print $1 }' \
    "$E2E_TMP/idle.s" | sort)
want=$(e2e_ctl stats | awk '$1 ~ /^drop\./ { sub(/^drop\./, "", $1); print $1 }' | sort)
[ -n "$want" ] && [ "$reasons" = "$want" ] || {
	diff <(echo "$want") <(echo "$reasons")
	fail "sipnat_drops_total's reasons are not sipnatctl stats' drop.* (above: < stats, > metrics)"
}
[ -n "$(val idle 'sipnat_sip_alarms_one_way_audio_total{}')" ] ||
    fail "no sipnat_sip_alarms_one_way_audio_total"
for f in sipnat_sip_alarms_one_way_audio_total:counter \
    sipnat_sip_dialogs:gauge sipnat_tcp_stream_open:gauge; do
	[ "$(type_of idle "${f%:*}")" = "${f#*:}" ] ||
	    fail "${f%:*} is '$(type_of idle "${f%:*}")', not a ${f#*:}"
done
[ "$(val idle 'sipnat_sip_dialogs{}')" = 0 ] ||
    fail "before the call sipnat_sip_dialogs is '$(val idle 'sipnat_sip_dialogs{}')'"
for f in sipnat_rtp_packets sipnat_rtp_lost sipnat_rtp_jitter_seconds \
    sipnat_rtp_one_way_alarm; do
	[ -n "$(type_of idle "$f")" ] || fail "no TYPE for $f"
	! grep -q "^$f{" "$E2E_TMP/idle.s" ||
	    fail "before any call $f has series: $(grep "^$f{" "$E2E_TMP/idle.s")"
done
e2e_log "before the call: valid, $(grep -vc '^#TYPE' "$E2E_TMP/idle.s") series, $(wc -l <<<"$reasons") drop reasons"

# --- the call: RTP until rtp.halt, which this script creates mid-call
rtp_bg lan1 phone "$LAN1:$PHONE_RTP" --until "$E2E_TMP/rtp.halt"
PHONE_RTP_PID=$E2E_LAST_PID
rtp_bg wan1 prov "$WAN1:$PROV_RTP" --until "$E2E_TMP/rtp.halt"
PROV_RTP_PID=$E2E_LAST_PID

start_provider prov call-uas.xml
start_phone phone call-uac.xml -d "$CALL_MS"
e2e_log "the phone calls the provider for $((CALL_MS / 1000)) s"
wait_until 10 call_flowing || {
	e2e_ctl calls
	fail "sipnatctl never showed the call confirmed with media both ways"
}
cid=$(e2e_ctl -j calls | "$E2E_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["calls"][0]["call_id"])') ||
    fail "cannot read the Call-ID from sipnatctl -j calls"
sleep 0.5

scrape during
v=$(val during 'sipnat_sessions{}')
positive "$v" || fail "during the call sipnat_sessions is '$v'"
[ "$(val during 'sipnat_sip_dialogs{}')" = 1 ] ||
    fail "during the call sipnat_sip_dialogs is '$(val during 'sipnat_sip_dialogs{}')', not 1"
for dir in in out; do
	k=("call_id=$cid" media=audio "direction=$dir")
	v=$(sval during sipnat_rtp_packets "${k[@]}")
	positive "$v" || {
		grep '^sipnat_rtp' "$E2E_TMP/during.s"
		fail "during the call sipnat_rtp_packets{${k[*]}} is '$v' (above)"
	}
	for f in sipnat_rtp_lost sipnat_rtp_jitter_seconds sipnat_rtp_one_way_alarm; do
		[ -n "$(sval during "$f" "${k[@]}")" ] ||
		    fail "during the call there is no single $f{${k[*]}}"
	done
	e2e_log "during the call: sipnat_rtp_packets direction=$dir $v"
done
n=$(call_series during "$cid")
[ "$n" = 8 ] || fail "during the call $n series name the call, expected 8 (4 families x 2 directions)"
e2e_log "during the call: sessions $(val during 'sipnat_sessions{}'), 1 dialog, 8 series for $cid"

# --- RTP stopped, the call still up: the endpoint agrees with sipnatctl
touch "$E2E_TMP/rtp.halt"
e2e_wait_for 5 not_running "$PHONE_RTP_PID" || fail "the phone's RTP did not stop"
e2e_wait_for 5 not_running "$PROV_RTP_PID" || fail "the provider's RTP did not stop"
sleep 0.3
scrape before
e2e_ctl -j stats >"$E2E_TMP/stats.json" || fail "sipnatctl -j stats failed"
e2e_ctl -j calls >"$E2E_TMP/calls.json" || fail "sipnatctl -j calls failed"
scrape after
[ "$(call_summary)" != none ] || fail "the call ended before the comparison (CALL_MS too short)"

bad=$("$E2E_PYTHON" - "$E2E_TMP" "$cid" <<'EOF'
import json, sys

tmp, cid = sys.argv[1], sys.argv[2]


def load(name):
    d = {}
    for line in open("%s/%s.s" % (tmp, name)):
        k, v = line.rstrip("\n").split("\t", 1)
        if k != "#TYPE":
            d[k] = float(v)
    return d


def series(scrape, fam, want):
    """The one series of fam with (at least) the labels want, or None."""
    got = [v for k, v in scrape.items() if k.startswith(fam + "{") and
           all(any(k[len(fam):].find(c + '%s="%s"' % kv + e) >= 0
                   for c in "{," for e in ",}") for kv in want.items())]
    return got[0] if len(got) == 1 else None


m1, m2 = load("before"), load("after")
stats = json.load(open(tmp + "/stats.json"))["stats"]
bad = []
for k, v in stats.items():
    if k.startswith("drop."):
        keys = ['sipnat_drops_total{reason="%s"}' % k[5:]]
    else:
        base = "sipnat_" + k.replace(".", "_").replace("-", "_")
        keys = [base + "{}", base + "_total{}"]
    found = [x for x in keys if x in m1 and x in m2]
    if len(found) != 1:
        bad.append("stats %s: no single sample among %s" % (k, keys))
        continue
    x = found[0]
    if not m1[x] <= v <= m2[x]:
        bad.append("stats %s = %d, %s = %g then %g" % (k, v, x, m1[x], m2[x]))
calls = [c for c in json.load(open(tmp + "/calls.json"))["calls"]
         if c["call_id"] == cid]
if len(calls) != 1 or len(calls[0]["media"]) != 1:
    bad.append("sipnatctl -j calls does not show the call with one stream")
else:
    m = calls[0]["media"][0]
    for d in ("out", "in"):
        lab = {"call_id": cid, "direction": d, "media": "audio"}
        for fam, want, tol in (
                ("sipnat_rtp_packets", m[d]["packets"], 0),
                ("sipnat_rtp_lost", m[d]["lost"], 0),
                ("sipnat_rtp_jitter_seconds", m[d]["jitter_ms"] / 1000,
                 0.000006)):
            for name, s in (("first", m1), ("second", m2)):
                got = series(s, fam, lab)
                if got is None or abs(got - want) > tol:
                    bad.append("%s%s = %s in the %s scrape, sipnatctl %s"
                               % (fam, sorted(lab.items()), got, name, want))
    if m["packets_out"] != m["out"]["packets"] or \
            m["packets_in"] != m["in"]["packets"]:
        bad.append("sipnatctl's packets_out/in differ from its out/in packets")
print("\n".join(bad))
EOF
) || fail "cannot compare the scrapes with sipnatctl"
[ -z "$bad" ] || {
	echo "$bad"
	fail "/metrics and sipnatctl disagree (above)"
}
n=$("$E2E_PYTHON" -c 'import json,sys; print(len(json.load(sys.stdin)["stats"]))' <"$E2E_TMP/stats.json")
e2e_log "with RTP stopped: all $n keys of sipnatctl stats and the call's RTP packets, loss and jitter match"

# --- other paths, other methods
for p in / /metrics/ /metricsx /foo; do
	out=$(http "$p" "$E2E_TMP/other.body") || fail "curl $p failed: $out"
	[ "${out%% *}" = 404 ] || fail "GET $p answered '$out', not 404"
done
out=$(http /metrics "$E2E_TMP/post.body" POST) || fail "curl -X POST failed: $out"
code=${out%% *}
[ "$code" -ge 400 ] && [ "$code" -lt 600 ] ||
    fail "POST /metrics answered '$out', not refused"
! grep -q sipnat_ "$E2E_TMP/post.body" || fail "POST /metrics answered with the metrics"
e2e_log "other paths: 404; POST /metrics: $code"

# --- after the call
sipp_done "$PHONE_PID" phone
sipp_done "$PROV_PID" prov
e2e_log "the call completed (both sipps succeeded)"
scrape ended
n=$(call_series ended "$cid")
[ "$n" = 0 ] || {
	grep -F "call_id=\"$cid\"" "$E2E_TMP/ended.s"
	fail "after the BYE $n series still name the call"
}
[ "$(val ended 'sipnat_sip_dialogs{}')" = 0 ] ||
    fail "after the BYE sipnat_sip_dialogs is '$(val ended 'sipnat_sip_dialogs{}')'"
e2e_log "after the BYE: no series of the call, no dialog"

# --- a call with two audio streams (one INVITE, not answered): no series
# twice; each stream has its own.
cid2="two-streams-$E2E_ID@phone.example.net"
"$E2E_PYTHON" "$E2E_DIR/sipraw.py" mkmsg "$E2E_TMP/two.bin" <<EOF
INVITE sip:provider@$WAN1:5060 SIP/2.0
Via: SIP/2.0/UDP $LAN1:5060;branch=z9hG4bK-two-$E2E_ID
From: <sip:phone@example.net>;tag=two$E2E_ID
To: <sip:provider@example.net>
Call-ID: $cid2
CSeq: 1 INVITE
Contact: <sip:phone@$LAN1:5060>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: auto

v=0
o=phone 2 2 IN IP4 $LAN1
s=-
c=IN IP4 $LAN1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
m=audio 6002 RTP/AVP 0
a=rtpmap:0 PCMU/8000
EOF
e2e_exec lan1 "$E2E_PYTHON" "$E2E_DIR/sipraw.py" send --bind "$LAN1:5060" \
    --to "$WAN1:5060" "$E2E_TMP/two.bin" >/dev/null ||
    fail "cannot send the two-stream INVITE"
two_streams() {
	e2e_ctl -j calls | "$E2E_PYTHON" -c '
import json, sys
c = [c for c in json.load(sys.stdin)["calls"] if c["call_id"] == sys.argv[1]]
sys.exit(not c or len(c[0]["media"]) != 2)' "$cid2"
}
wait_until 5 two_streams || {
	e2e_ctl calls
	fail "sipnatctl does not show $cid2 with two streams"
}
if scrape two later; then
	n=$(call_series two "$cid2")
	[ "$n" = 16 ] ||
	    fail "with two audio streams $n series name the call, expected 16 (4 families x 2 streams x 2 directions)"
	e2e_log "a call with two audio streams: 16 series, none twice"
fi
# A CANCEL ends it (and its series).
"$E2E_PYTHON" "$E2E_DIR/sipraw.py" mkmsg "$E2E_TMP/cancel.bin" <<EOF
CANCEL sip:provider@$WAN1:5060 SIP/2.0
Via: SIP/2.0/UDP $LAN1:5060;branch=z9hG4bK-two-$E2E_ID
From: <sip:phone@example.net>;tag=two$E2E_ID
To: <sip:provider@example.net>
Call-ID: $cid2
CSeq: 1 CANCEL
Max-Forwards: 70
Content-Length: 0
EOF
e2e_exec lan1 "$E2E_PYTHON" "$E2E_DIR/sipraw.py" send --bind "$LAN1:5060" \
    --to "$WAN1:5060" "$E2E_TMP/cancel.bin" >/dev/null ||
    fail "cannot send the CANCEL"
no_call() {
	[ "$(call_summary)" = none ]
}
wait_until 5 no_call || {
	e2e_ctl calls
	fail "the CANCEL did not end $cid2"
}

# --- a reload cannot move the endpoint
e2e_write_conf "$E2E_TMP/sipnat.ini" "metrics.listen = $METRICS_NEW" ||
    fail "cannot write the new config"
out=$(e2e_ctl reload) || fail "sipnatctl reload failed: $out"
e2e_wait_for 3 grep -q 'reload: metrics.listen changed: needs a restart' "$E2E_LOG" ||
    fail "the reload did not log that metrics.listen needs a restart"
scrape reloaded
n=$(call_series reloaded "$cid2")
[ "$n" = 0 ] || fail "after the CANCEL $n series still name $cid2"
[ "$(val reloaded 'sipnat_reloads_total{}')" = 1 ] ||
    fail "sipnat_reloads_total is '$(val reloaded 'sipnat_reloads_total{}')' after one reload"
if out=$(http /metrics "$E2E_TMP/new.prom" GET "$METRICS_NEW" 2>&1); then
	fail "after the reload sipnatd also answers on $METRICS_NEW: $out"
fi
e2e_log "reload: still on $METRICS, nothing on $METRICS_NEW, restart needed (logged)"

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"

# --- refusals at start
for v in "$GW_LAN" "$GW_LAN:0" "$GW_LAN:65536" "10.0.0.300:9160" "localhost:9160"; do
	e2e_write_conf "$E2E_TMP/bad.ini" "metrics.listen = $v" 2>/dev/null &&
	    fail "sipnatd -t accepts metrics.listen = $v"
done
e2e_log "sipnatd -t refuses malformed metrics.listen values"

# Start sipnatd on CONF and expect it to exit non-zero at once, logging
# WHY (a regular expression).
refuses_to_start() {
	local conf=$1 why=$2 log=$E2E_TMP/refused.log pid

	e2e_bg gw "$log" "$SIPNATD" -f -c "$conf"
	pid=$E2E_LAST_PID
	e2e_wait_for 10 not_running "$pid" || {
		e2e_kill "$pid"
		fail "sipnatd with $(grep listen "$conf") kept running"
	}
	if e2e_kill "$pid"; then
		fail "sipnatd with $(grep listen "$conf") exited 0"
	fi
	grep -qE "$why" "$log" || {
		cat "$log"
		fail "sipnatd with $(grep listen "$conf") did not say '$why'"
	}
	! grep -q 'ERROR: .*Sanitizer' "$log" || {
		cat "$log"
		fail "sanitizer report when sipnatd refused to start"
	}
}

e2e_write_conf "$E2E_TMP/bad.ini" "metrics.listen = 192.0.2.99:9160" ||
    fail "cannot write the config"
refuses_to_start "$E2E_TMP/bad.ini" "metrics: cannot listen on 192.0.2.99:9160"
e2e_bg gw "$E2E_TMP/squat.log" "$E2E_PYTHON" -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)	# past TIME_WAIT
s.bind(("'"$GW_LAN"'", 9160))
s.listen()
print("listening", flush=True)
time.sleep(30)'
SQUAT_PID=$E2E_LAST_PID
e2e_wait_for 5 grep -qx listening "$E2E_TMP/squat.log" || {
	cat "$E2E_TMP/squat.log"
	fail "cannot take $METRICS first"
}
e2e_write_conf "$E2E_TMP/bad.ini" "metrics.listen = $METRICS" ||
    fail "cannot write the config"
refuses_to_start "$E2E_TMP/bad.ini" "metrics: cannot listen on $METRICS"
e2e_kill "$SQUAT_PID"
e2e_log "sipnatd refuses to start on an address it lacks and on a port taken"

[ -z "$LATER" ] || fail "$LATER"
pass "the Prometheus endpoint during a call, with sipnatctl's numbers"
