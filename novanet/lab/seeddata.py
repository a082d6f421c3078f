# ruff: noqa: E501 - the listings are verbatim; one rule is longer than a line
"""The seed article's listings, verbatim (tests/data/seed/ holds the same text as files).

They are the ground truth the demo and the end-to-end tests compare the lab
with; :mod:`novanet.lab.expect` adapts them to the lab's configuration
(paths, lease time, instance id). Kept as code so that an installed
novanet-lab needs no data files; a test checks they equal tests/data/seed.
"""

from __future__ import annotations

# controller-nova.conf
CONTROLLER_NOVA_CONF = """\
--public_interface=eth1
--fixed_range=10.0.0.0/24
--flat_interface=eth2
--flat_network_bridge=br100
--network_manager=nova.network.manager.FlatDHCPManager
"""

# controller-dnsmasq-argv.txt
CONTROLLER_DNSMASQ_ARGV = """\
/usr/sbin/dnsmasq
--strict-order
--bind-interfaces
--conf-file=
--domain=novalocal
--pid-file=/var/lib/nova/networks/nova-br100.pid
--listen-address=10.0.0.1
--except-interface=lo
--dhcp-range=10.0.0.2,static,120s
--dhcp-lease-max=256
--dhcp-hostsfile=/var/lib/nova/networks/nova-br100.conf
--dhcp-script=/usr/bin/nova-dhcpbridge
--leasefile-ro
"""

# controller-hostsfile-after-boot.txt
CONTROLLER_HOSTSFILE_AFTER_BOOT = """\
fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2
"""

# controller-iptables-filter.txt
CONTROLLER_IPTABLES_FILTER = """\
-P INPUT ACCEPT
-P FORWARD ACCEPT
-P OUTPUT ACCEPT
-N nova-api-FORWARD
-N nova-api-INPUT
-N nova-api-OUTPUT
-N nova-api-local
-N nova-filter-top
-N nova-network-FORWARD
-N nova-network-INPUT
-N nova-network-OUTPUT
-N nova-network-local
-A INPUT -j nova-network-INPUT
-A INPUT -j nova-api-INPUT
-A FORWARD -j nova-filter-top
-A FORWARD -j nova-network-FORWARD
-A FORWARD -j nova-api-FORWARD
-A OUTPUT -j nova-filter-top
-A OUTPUT -j nova-network-OUTPUT
-A OUTPUT -j nova-api-OUTPUT
-A nova-api-INPUT -d 192.168.56.200/32 -p tcp -m tcp --dport 8775 -j ACCEPT
-A nova-filter-top -j nova-network-local
-A nova-filter-top -j nova-api-local
-A nova-network-FORWARD -i br100 -j ACCEPT
-A nova-network-FORWARD -o br100 -j ACCEPT
-A nova-network-INPUT -i br100 -p udp -m udp --dport 67 -j ACCEPT
-A nova-network-INPUT -i br100 -p tcp -m tcp --dport 67 -j ACCEPT
-A nova-network-INPUT -i br100 -p udp -m udp --dport 53 -j ACCEPT
-A nova-network-INPUT -i br100 -p tcp -m tcp --dport 53 -j ACCEPT
"""

# controller-iptables-nat.txt
CONTROLLER_IPTABLES_NAT = """\
-P PREROUTING ACCEPT
-P INPUT ACCEPT
-P OUTPUT ACCEPT
-P POSTROUTING ACCEPT
-N nova-api-OUTPUT
-N nova-api-POSTROUTING
-N nova-api-PREROUTING
-N nova-api-float-snat
-N nova-api-snat
-N nova-network-OUTPUT
-N nova-network-POSTROUTING
-N nova-network-PREROUTING
-N nova-network-float-snat
-N nova-network-snat
-N nova-postrouting-bottom
-A PREROUTING -j nova-network-PREROUTING
-A PREROUTING -j nova-api-PREROUTING
-A OUTPUT -j nova-network-OUTPUT
-A OUTPUT -j nova-api-OUTPUT
-A POSTROUTING -j nova-network-POSTROUTING
-A POSTROUTING -j nova-api-POSTROUTING
-A POSTROUTING -j nova-postrouting-bottom
-A nova-api-snat -j nova-api-float-snat
-A nova-network-POSTROUTING -s 10.0.0.0/24 -d 192.168.56.200/32 -j ACCEPT
-A nova-network-POSTROUTING -s 10.0.0.0/24 -d 10.128.0.0/24 -j ACCEPT
-A nova-network-POSTROUTING -s 10.0.0.0/24 -d 10.0.0.0/24 -m conntrack ! --ctstate DNAT -j ACCEPT
-A nova-network-PREROUTING -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.56.200:8775
-A nova-network-snat -j nova-network-float-snat
-A nova-network-snat -s 10.0.0.0/24 -j SNAT --to-source 192.168.56.200
-A nova-postrouting-bottom -j nova-network-snat
-A nova-postrouting-bottom -j nova-api-snat
"""

# compute-1-iptables-filter.txt
COMPUTE_1_IPTABLES_FILTER = """\
-P INPUT ACCEPT
-P FORWARD ACCEPT
-P OUTPUT ACCEPT
-N nova-compute-FORWARD
-N nova-compute-INPUT
-N nova-compute-OUTPUT
-N nova-compute-inst-9
-N nova-compute-local
-N nova-compute-provider
-N nova-compute-sg-fallback
-N nova-filter-top
-A INPUT -j nova-compute-INPUT
-A FORWARD -j nova-filter-top
-A FORWARD -j nova-compute-FORWARD
-A OUTPUT -j nova-filter-top
-A OUTPUT -j nova-compute-OUTPUT
-A nova-compute-FORWARD -i br100 -j ACCEPT
-A nova-compute-FORWARD -o br100 -j ACCEPT
-A nova-compute-inst-9 -m state --state INVALID -j DROP
-A nova-compute-inst-9 -m state --state RELATED,ESTABLISHED -j ACCEPT
-A nova-compute-inst-9 -j nova-compute-provider
-A nova-compute-inst-9 -s 10.0.0.1/32 -p udp -m udp --sport 67 --dport 68 -j ACCEPT
-A nova-compute-inst-9 -s 10.0.0.0/24 -j ACCEPT
-A nova-compute-inst-9 -j nova-compute-sg-fallback
-A nova-compute-local -d 10.0.0.2/32 -j nova-compute-inst-9
-A nova-compute-sg-fallback -j DROP
-A nova-filter-top -j nova-compute-local
"""

FILES = {
    "controller-nova.conf": CONTROLLER_NOVA_CONF,
    "controller-dnsmasq-argv.txt": CONTROLLER_DNSMASQ_ARGV,
    "controller-hostsfile-after-boot.txt": CONTROLLER_HOSTSFILE_AFTER_BOOT,
    "controller-iptables-filter.txt": CONTROLLER_IPTABLES_FILTER,
    "controller-iptables-nat.txt": CONTROLLER_IPTABLES_NAT,
    "compute-1-iptables-filter.txt": COMPUTE_1_IPTABLES_FILTER,
}

# What the article says in prose around its listings.
CONTROLLER_IP = "192.168.56.200"
GATEWAY_IP = "192.168.56.101"
FIXED_RANGE = "10.0.0.0/24"
BRIDGE = "br100"
CIRROS_NAME = "cirros"
CIRROS_MAC = "fa:16:3e:2c:e8:ec"
CIRROS_ADDRESS = "10.0.0.2"
# The article's instance was id 9: its chain is nova-compute-inst-9.
SEED_INSTANCE_ID = 9
SEED_NETWORKS_PATH = "/var/lib/nova/networks"
SEED_DHCPBRIDGE = "/usr/bin/nova-dhcpbridge"
SEED_LEASE_TIME = "120s"
# The guest's console (cirros 0.3), from /var/lib/nova/instances/instance-00000009/console.log.
CLOUD_SETUP_LINE = "cloud-setup: successful after 1/30 tries: up 4.74. iid=i-00000009"

# From the article's prose listings (ip a, brctl show, route -n), the lines that
# mean something in a lab; route -n rows keep the article's eight columns.
CONTROLLER_IP_A = {
    "eth1": ("08:00:27:9d:c4:b0", "inet 192.168.56.200/24 brd 192.168.56.255 scope global eth1"),
    "eth2": ("08:00:27:8f:87:fa", None),
    "br100": ("08:00:27:8f:87:fa", "inet 10.0.0.1/24 brd 10.0.0.255 scope global br100"),
}
CONTROLLER_BRCTL_SHOW = "br100   8000.0800278f87fa no    eth2"
CONTROLLER_ROUTE_N = """\
0.0.0.0         192.168.56.101  0.0.0.0         UG    100    0        0 eth1
10.0.0.0        0.0.0.0         255.255.255.0   U     0      0        0 br100
169.254.0.0     0.0.0.0         255.255.0.0     U     1000   0        0 eth1
192.168.56.0    0.0.0.0         255.255.255.0   U     0      0        0 eth1
"""
COMPUTE_1_ETH2_MAC = "08:00:27:15:85:17"
COMPUTE_1_VNET0_MAC = "fe:16:3e:2c:e8:ec"
GUEST_INET = "inet 10.0.0.2/24 brd 10.0.0.255 scope global eth0"
GUEST_ROUTE_N = """\
0.0.0.0         10.0.0.1        0.0.0.0         UG    0      0        0 eth0
10.0.0.0        0.0.0.0         255.255.255.0   U     0      0        0 eth0
"""
# What the article's pings printed.
PING_CONTROLLER_TO_INSTANCE = "64 bytes from 10.0.0.2: icmp_req=1 ttl=64 time=1.33 ms"
PING_COMPUTE_TO_INSTANCE = "ping: sendmsg: Operation not permitted"
