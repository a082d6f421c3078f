#!/usr/bin/env bash
# System packages novanet's daemons, lab and tests use (Debian 12 / Ubuntu names).
set -euo pipefail
# program -> package
declare -A wanted=(
    [dnsmasq]=dnsmasq-base
    [dhcp_release]=dnsmasq-utils
    [iptables-legacy-restore]=iptables
    [ip]=iproute2
    [busybox]=busybox
    [socat]=socat
    [modprobe]=kmod
    [tcpdump]=tcpdump
    [ping]=iputils-ping
    [nsenter]=util-linux
    # share_dhcp_address: nova's ebtables rules (the nft-based ebtables of Debian 12)
    [ebtables]=ebtables
    [setpriv]=util-linux
    [systemd-analyze]=systemd
    # novanet-lab boot --guest qemu: a TCG VM (the guest's kernel and busybox
    # are .debs that the lab fetches itself with apt-get download; modinfo
    # from kmod orders their modules)
    [qemu-system-x86_64]=qemu-system-x86
    [dpkg-deb]=dpkg
    # novanet-compute writes its anti-spoofing table (bridge novanet) with
    # nft -f; bench/iptables_breakdown.py measures the nft program's cost.
    [nft]=nftables
    # security groups: one hash:ip set of member addresses per source group
    [ipset]=ipset
)
missing=()
for program in "${!wanted[@]}"; do
    if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$program" >/dev/null 2>&1; then
        missing+=("${wanted[$program]}")
    fi
done
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Bridged traffic reaches iptables only with br_netfilter (the per-instance
# chains filter nothing without it).
modprobe br_netfilter 2>/dev/null || true
