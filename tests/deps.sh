# shellcheck shell=bash
# What the tests, the demo and the benchmark need on a Debian 12 machine;
# sourced by tests/run and scripts/sipnat-demo.

SIPNAT_PACKAGES="build-essential autoconf automake pkg-config clang
libclang-rt-dev libevent-dev libsofia-sip-ua-dev libinih-dev libcmocka-dev
iproute2 nftables iputils-ping sip-tester kamailio stun-client stun-server
iperf3 socat python3 procps kmod curl tshark"

# Install them (as root) unless SIPNAT_NO_INSTALL=1; quiet unless it fails.
sipnat_install_deps() {
	[ "${SIPNAT_NO_INSTALL:-0}" = 1 ] && return 0
	export DEBIAN_FRONTEND=noninteractive
	# shellcheck disable=SC2086
	if ! { apt-get update -q && apt-get install -y -q $SIPNAT_PACKAGES; } \
	    > /tmp/sipnat-apt.log 2>&1; then
		tail -20 /tmp/sipnat-apt.log
		return 1
	fi
}
