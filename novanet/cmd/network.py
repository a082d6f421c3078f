"""novanet-network: the controller daemon (nova-network's FlatDHCPManager)."""

from __future__ import annotations

import sys

DESCRIPTION = "novanet's controller daemon"


def main() -> None:
    from novanet.service import args, green

    args.parse_args("novanet-network", DESCRIPTION, None)  # --help/--version: before eventlet

    green.monkey_patch()  # before anything else creates a lock, socket or thread
    from novanet.cmd.pipes import run_filter
    from novanet.network.service import build
    from novanet.service import daemon

    sys.exit(run_filter(lambda: daemon.run("novanet-network", DESCRIPTION, build)))


if __name__ == "__main__":
    main()
