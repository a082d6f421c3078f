"""novanet-manage: administer networks, fixed IPs, instances and services."""

from __future__ import annotations

import os
import sys


def main() -> None:
    # oslo.messaging imports eventlet whether or not it is used, and eventlet
    # imports dnspython for its green resolver: 0.28 s of the 0.69 s this
    # short-lived client spent starting. It never monkey patches nor resolves
    # a name in a green thread, so the plain resolver is the right one.
    os.environ.setdefault("EVENTLET_NO_GREENDNS", "yes")
    from novanet.cmd.pipes import run_filter
    from novanet.manage.cli import main as run

    sys.exit(run_filter(run))


if __name__ == "__main__":
    main()
