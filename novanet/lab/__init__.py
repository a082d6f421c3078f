"""novanet-lab: the seed's datacenter in network namespaces, running novanet.

The wires: topology (pure description) -> fabric (namespaces, bridges, NICs
via pyroute2) + mounts (per-node mount views and hostnames) + relay
(RabbitMQ through a unix socket) + broker (a RabbitMQ vhost per lab) +
procs/spawn (background programs in nodes) + guest (udhcpc in instance
namespaces) + nodeconf (nova.conf per node); lab.Lab ties them together.

novanet in it: daemons (db sync, network create, the daemons, readiness),
instances (boot, delete, ping), cloud (all of it for one lab). The seed's
check: seeddata (the article's listings) -> expect (adapted to the lab) vs
observe + netview (what the lab shows) -> checks (comparison, printing) ->
verify (the list of observations) -> demo (``novanet-lab demo``).
cli + commands are the command line. Nothing runs at import.
"""
