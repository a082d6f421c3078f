"""novanet-network: the controller daemon (nova-network's FlatDHCPManager)."""

from __future__ import annotations

import sys


def main() -> None:
    from novanet.service import green

    green.monkey_patch()  # before anything else creates a lock, socket or thread
    from novanet.network.service import build
    from novanet.service import daemon

    sys.exit(daemon.run("novanet-network", "novanet's controller daemon", build))


if __name__ == "__main__":
    main()
