"""novanet-lab: the seed's datacenter in network namespaces.

topology (pure description) -> fabric (namespaces, bridges, NICs via
pyroute2) + mounts (per-node mount views and hostnames) + relay (RabbitMQ
through a unix socket) + procs/spawn (background programs in nodes) +
guest (udhcpc in instance namespaces) + nodeconf (nova.conf per node);
lab.Lab ties them together, cli is the command line. Nothing runs at import.
"""
