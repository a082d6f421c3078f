"""nftables tables novanet owns: the compute agent's anti-spoofing table ``bridge novanet``.

Why the nftables ``bridge`` family. The frames to filter are the ones a
guest hands its bridge port, before anything else looks at them: ARP never
reaches iptables, and an IPv4 packet reaches it (through br_netfilter) only
after the bridge has already learned its source MAC. nova-network used
libvirt's nwfilter, i.e. ebtables with one chain per port and one rule per
port in a list that every frame walks; the legacy ebtables kernel module is
not even built on kernels like this one's (BRIDGE_NF_EBTABLES_LEGACY is
off). nftables gives the same hook with sets: per-port data are elements
of four sets (see novanet/compute/antispoof.py), so a frame costs the same
dozen rules and a few hash lookups whatever the number of ports, and a port
is added or removed by changing its own elements in one transaction.

How it is applied (table.py, nfnl.py, generation.py): elements are read and
written over nfnetlink from the daemon itself (no process per change; the
``nft`` program loads every element of the table first, and its socket
close after a deletion waits ~10 ms in the kernel); the table's chains and
set declarations are written whole by ``nft -f`` (through
processutils.execute), in one transaction with every element, whenever the
table is missing, was changed by hand, or is first seen after a start.

Coexistence:

- iptables-nft: its tables are nf_tables tables of the ``ip`` family (filter,
  nat); ours is a separate table of the ``bridge`` family, and neither ever
  touches the other's. Both count commits on the one nf_tables generation
  id of the namespace, which the iptables manager uses as its change probe:
  the agent shares one SharedGeneration between both, which hides our own
  commits from the iptables manager (otherwise it would re-read its tables,
  0.6 s at 5,000 instances, after every instance we add).
- br_netfilter: it hands bridged IPv4 to iptables from the bridge prerouting
  hook at priority 0; our chain runs at -300, so a forged packet is dropped
  before it creates a conntrack entry or reaches the per-instance chains,
  and what we accept goes on to iptables exactly as before.
- share_dhcp_address's ebtables rules (novanet/linux/ebtables.py): on Debian
  ebtables is ebtables-nft, whose rules live in the ``bridge filter`` table
  (hooks input, forward, output); ours is another table on another hook.
  nf_tables runs every table's base chains: a frame must be accepted by
  both, and ours only drops or lets a frame go on (an accept in one table
  never skips another's rules).
- Anything else (libvirt's nwfilter tables, an operator's ``bridge`` tables):
  untouched; frames of ports that are not instance ports never match.
"""
