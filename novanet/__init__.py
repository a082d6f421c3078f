"""novanet: nova-network's FlatDHCP networking as standalone Linux daemons.

Importing this package does nothing but define the version: the dhcp-script
(novanet-dhcpbridge) imports it on every lease event and must start fast.
"""

__version__ = "0.1.0"
