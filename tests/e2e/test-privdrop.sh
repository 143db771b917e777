#!/bin/bash
#
# test-privdrop.sh: sipnatd opens the TUN and the raw socket as root, then
# runs as the configured user (general.user = nobody) and still does its
# job: NAT (a ping through it), the control socket and a reload.

. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_sipnatd
e2e_is_sipnatd || skip "only about sipnatd"
id nobody >/dev/null 2>&1 || skip "no user nobody"
chmod 755 "$E2E_TMP"

e2e_setup
e2e_write_conf "$E2E_TMP/sipnat.ini" "general.user = nobody" ||
    fail "cannot write the config"
chmod 644 "$E2E_TMP/sipnat.ini"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"

user=$(ps -o user= -p "$E2E_SIPNATD_PID" | tr -d ' ')
[ "$user" = nobody ] || fail "sipnatd runs as '$user', not nobody"
e2e_log "sipnatd runs as $user"

e2e_ping lan1 "$WAN1" -c 3 -W 2 || fail "no ping through sipnatd running as nobody"
e2e_log "ping through the NAT works"

out=$(e2e_ctl reload) || fail "reload as nobody failed: $out"
[ "$out" = "reload OK" ] || fail "reload answered '$out'"
e2e_ping lan1 "$WAN1" -c 1 -W 2 || fail "no ping after the reload"
e2e_log "reload OK, still forwarding"

pass "privileges dropped after set-up, NAT and control still work"
