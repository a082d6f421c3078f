"""Entry point of novanet-lab."""

from __future__ import annotations

import sys

from novanet.cmd.pipes import run_filter
from novanet.lab import cli


def main() -> None:
    sys.exit(run_filter(cli.main))


if __name__ == "__main__":
    main()
