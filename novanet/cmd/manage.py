"""novanet-manage: administer networks, fixed IPs, instances and services."""

from __future__ import annotations

import sys


def main() -> None:
    from novanet.manage.cli import main as run

    sys.exit(run())


if __name__ == "__main__":
    main()
