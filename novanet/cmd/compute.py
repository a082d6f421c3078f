"""novanet-compute: the compute agent (bridge, VIFs, per-instance iptables chains)."""

from __future__ import annotations

import sys

DESCRIPTION = "novanet's compute agent"


def main() -> None:
    from novanet.service import args, green

    args.parse_args("novanet-compute", DESCRIPTION, None)  # --help/--version: before eventlet

    green.monkey_patch()  # before anything else creates a lock, socket or thread
    from novanet.cmd.pipes import run_filter
    from novanet.compute.service import build
    from novanet.service import daemon

    sys.exit(run_filter(lambda: daemon.run("novanet-compute", DESCRIPTION, build)))


if __name__ == "__main__":
    main()
