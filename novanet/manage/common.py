"""Helpers shared by novanet-manage subcommands."""

from __future__ import annotations

import argparse

from novanet.exception import UsageError


def add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=["table", "json"],
        default=None,
        help="output format (json: a list of objects keyed by lower-case column names)",
    )


def fmt(args: argparse.Namespace) -> str:
    return getattr(args, "format", None) or getattr(args, "global_format", None) or "table"


def option(parser: argparse.ArgumentParser, name: str, **kw: object) -> None:
    """An option accepted as nova spelled it (--fixed_range_v4) and dashed (--fixed-range-v4)."""
    spellings = [f"--{name}"]
    if "_" in name:
        spellings.append("--" + name.replace("_", "-"))
    parser.add_argument(*spellings, dest=name, **kw)  # type: ignore[arg-type]


def parse_bool(value: str) -> bool:
    text = value.strip().lower()
    if text in ("t", "true", "yes", "y", "1", "on"):
        return True
    if text in ("f", "false", "no", "n", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{value!r} is not a boolean (T or F)")


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 1")
    return number


def require(value: object, flag: str) -> None:
    if value is None or value == "":
        raise UsageError(f"{flag} is required")
