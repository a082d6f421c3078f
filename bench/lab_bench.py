"""End to end in the lab: `instance create` to the guest's DHCP lease (root).

Run: sudo .venv/bin/python -m bench.lab_bench [--instances 200] [--quick]

Builds its own lab (novanet-lab's datacenter in namespaces, the real daemons,
a RabbitMQ vhost) under a private base directory and removes it at the end,
also after a failure, Ctrl-C or SIGTERM. Every instance has a netns VIF and
busybox udhcpc in its namespace, as `novanet-lab boot` gives it. Phases:

1. first: S boots on compute-1 one at a time through `novanet-manage instance
   create` (what an operator waits for), then K through the RPC API from one
   open connection (what the server costs). Goal: median create -> lease <= 1 s.
2. burst: N boots across compute-1 and compute-2 from W workers through the
   CLI, then N through RPC. Goal: every guest holds exactly the address the
   database gave it, no address or MAC twice.
3. last: compute-1 then has S + K + N instances; K more CLI creates there must
   cost what its first K did (and K through RPC, the server's share).

After each phase: the wait for the `leased` flags (dnsmasq's dhcp-script) and
the CPU of each part. Where the time goes: a timeline of each first boot from
the daemons' INFO log stamps, one create with dnsmasq idle at the start and at
the end (probes), and CLI creates under `python -X importtime` when the latency
goal is not met (or with --profile). The network is the seed's 10.0.0.0/24 when
the run fits (the full run needs a /23). Exit status 1 only when a boot failed
or a guest holds a wrong address: goals not met are said in the output.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
from collections.abc import Sequence

from bench.common import median, with_sigterm
from bench.lab_driver import Bench, BenchNovanet, measure, network_rpc
from bench.lab_model import GOAL_TOTAL, say
from bench.lab_report import report
from novanet.lab.lab import Lab


def plan_prefix(args: argparse.Namespace) -> int:
    """Network prefix length: the seed's /24 when the run's instances fit in it."""
    needed = args.sequential + 2 * args.instances + 3 * args.sample + 8 + 8  # 8: probes, profile
    return min(24, 32 - math.ceil(math.log2(needed + 3)))


def run(args: argparse.Namespace) -> int:
    prefix = plan_prefix(args)
    base = tempfile.mkdtemp(prefix="novanet-labbench-")
    # dnsmasq drops to user nobody and must reach its hostsfile below: mkdtemp's 0700
    # would leave every DISCOVER unanswered.
    os.chmod(base, 0o755)
    lab = Lab(f"bench-{os.getpid()}", base=base)
    novanet = BenchNovanet(lab, prefix)
    try:
        say(f"building lab {lab.name} under {lab.base}")
        lab.up()
        # No novanet-metadata: it plays no part here, and starting it next to
        # novanet-network can lose a race on the shared nova-filter-top chain.
        novanet.start(metadata=False, progress=say)
        with network_rpc(lab) as api:
            bench = Bench(lab, novanet, api)
            results = measure(bench, args, prefix)
            if args.profile or median(results.phases["first-cli"].values("total_s")) > GOAL_TOTAL:
                say("profiling: CLI creates under -X importtime, RPC creates")
                results.profile = bench.cli_profile(1 if args.quick else 3)
    finally:
        say(f"removing lab {lab.name}")
        lab.down()
        with contextlib.suppress(OSError):
            os.rmdir(base)
    report(results)
    # Goals not met are said in the section; only a wrong result fails the run.
    return 0 if all(phase.ok for phase in results.phases.values()) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200, help="concurrent boots (N)")
    parser.add_argument("--sequential", type=int, default=20, help="sequential boots (S)")
    parser.add_argument("--sample", type=int, default=10, help="first/last creates compared (K)")
    parser.add_argument("--workers", type=int, default=16, help="concurrent boots' workers (W)")
    parser.add_argument("--profile", action="store_true", help="profile even if goals are met")
    parser.add_argument("--quick", action="store_true", help="N=20, S=5, K=3 (about a minute)")
    args = parser.parse_args(argv)
    if args.quick:
        args.instances, args.sequential, args.sample = 20, 5, 3
    if os.geteuid() != 0:
        print("lab_bench needs root (network namespaces)", file=sys.stderr)
        return 2
    return with_sigterm(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
