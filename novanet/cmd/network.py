"""novanet-network: the controller daemon (nova-network's FlatDHCPManager)."""

from __future__ import annotations

import sys


def main() -> None:
    from novanet.service import green

    green.monkey_patch()  # before anything else creates a lock, socket or thread
    from novanet.cmd.pipes import run_filter
    from novanet.network.service import build
    from novanet.service import daemon

    description = "novanet's controller daemon"
    sys.exit(run_filter(lambda: daemon.run("novanet-network", description, build)))


if __name__ == "__main__":
    main()
