"""Entry point of novanet-lab."""

from __future__ import annotations

import sys

from novanet.lab import cli


def main() -> None:
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
