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


def option_or_positional(parser: argparse.ArgumentParser, name: str, **kw: object) -> None:
    """``--name VALUE`` or just ``VALUE``: nova-manage handed the words left after
    the flags to the command in order, so ``fixed list compute-1`` meant
    ``fixed list --host compute-1``. Read back with :func:`pick`."""
    option(parser, name, **kw)
    parser.add_argument(
        f"{name}_positional",
        nargs="?",
        metavar=str(kw.get("metavar", name.upper())),
        help=f"the same as --{name}",
    )


def pick(args: argparse.Namespace, name: str) -> str | None:
    """The value of an :func:`option_or_positional` argument, from either spelling."""
    flag, word = getattr(args, name, None), getattr(args, f"{name}_positional", None)
    if flag is not None and word is not None and flag != word:
        raise UsageError(f"--{name} {flag} and {word} disagree: give it once")
    return flag if flag is not None else word
