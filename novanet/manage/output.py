"""Readable tables and JSON for novanet-manage."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Sequence
from typing import Any, TextIO

# C0 and C1 control characters and DEL: a newline in a display name would
# start a new table row, a tab or an escape sequence would shift or recolour
# the columns. Tables show them escaped; JSON keeps the exact text.
# U+2028/U+2029 end a line in some terminals and pagers.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def escape_controls(text: str) -> str:
    """``text`` with control characters written as ``\\n``, ``\\t``, ``\\x1b``..."""
    if not _CONTROL.search(text):
        return text
    # Backslashes doubled too, so that an escaped name reads unambiguously.
    text = text.replace("\\", "\\\\")
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), _code(m.group())), text)


def _code(char: str) -> str:
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return escape_controls(str(value))


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.replace(microsecond=value.microsecond).isoformat() + "Z"
    return value


def emit(
    out: TextIO,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    fmt: str = "table",
) -> None:
    """Print rows as an aligned table or as a JSON list keyed by lower-case column names."""
    if fmt == "json":
        keys = [c.lower().replace(" ", "_") for c in columns]
        data = [{k: _json_value(v) for k, v in zip(keys, row, strict=True)} for row in rows]
        out.write(json.dumps(data, indent=2) + "\n")
        return
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()
    out.write(line + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")


def emit_record(out: TextIO, fields: Sequence[tuple[str, Any]], fmt: str = "table") -> None:
    """One object: ``field  value`` lines, or a JSON list holding one object."""
    if fmt == "json":
        emit(out, [f for f, _ in fields], [[v for _, v in fields]], fmt)
        return
    width = max(len(f) for f, _ in fields)
    for field, value in fields:
        out.write(f"{field.ljust(width)}  {_cell(value)}\n")
