"""Explain the network: ``novanet-manage diagnose`` and ``novanet-manage trace``.

Layout (issue 15):

- :mod:`.facts`: what one node's kernel and processes hold right now, as a
  JSON-safe dict (gathered by the daemon on that node, served over RPC);
- :mod:`.packet`: the packet, hop and verdict types that the evaluators and
  the trace share;
- :mod:`.iptables_eval`: a real matcher for iptables-save text (novanet's
  rules and common administrators' rules); it says where it cannot predict;
- :mod:`.bridge_eval`: the anti-spoofing table (nftables bridge family);
- :mod:`.diagnose`: the checks of the facts against the intended state;
- :mod:`.trace`: a packet's path through the nodes, hop by hop, and its reply
  (the entry point), walked by :mod:`.paths` with :mod:`.hooks` (one
  netfilter hook, NAT and conntrack) on the view :mod:`.topology` makes of
  the facts and the database; :mod:`.endpoints` reads SRC and DST.
"""
