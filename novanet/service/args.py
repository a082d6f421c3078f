"""The daemons' command line (no eventlet, nothing heavy: --help and --version answer first)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from novanet import __version__
from novanet.conf import loader


def parse_args(program: str, description: str, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse a daemon's arguments; --help, --version and usage errors exit here."""
    parser = argparse.ArgumentParser(prog=program, description=description)
    loader.add_config_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="log at DEBUG level")
    parser.add_argument("--version", action="version", version=f"{program} {__version__}")
    return parser.parse_args(argv)
