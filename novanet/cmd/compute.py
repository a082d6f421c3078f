"""novanet-compute: the compute agent (bridge, VIFs, per-instance iptables chains)."""

from __future__ import annotations

import sys


def main() -> None:
    from novanet.service import green

    green.monkey_patch()  # before anything else creates a lock, socket or thread
    from novanet.cmd.pipes import run_filter
    from novanet.compute.service import build
    from novanet.service import daemon

    sys.exit(run_filter(lambda: daemon.run("novanet-compute", "novanet's compute agent", build)))


if __name__ == "__main__":
    main()
