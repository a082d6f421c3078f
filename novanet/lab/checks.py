"""Expected-vs-actual checks: the result type, the comparisons, and their printing.

A :class:`Check` holds both sides as lists of lines, so a listing mismatch
prints as a small unified diff and a one-line fact as ``expected`` /
``actual``. Comparisons are pure; the demo and the end-to-end tests use the
same ones.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping, Sequence

PASS = "pass"
FAIL = "fail"
SKIP = "skip"

MARKS = {PASS: "\u2713", FAIL: "\u2717", SKIP: "-"}
ASCII_MARKS = {PASS: "PASS", FAIL: "FAIL", SKIP: "SKIP"}


@dataclasses.dataclass
class Check:
    """One observation of the seed, compared."""

    key: str  # stable id: "controller.iptables.filter"
    title: str  # what an operator would type/see: "controller-1: iptables -S"
    status: str
    expected: list[str]
    actual: list[str]
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status == FAIL


def exact(
    key: str, title: str, expected: Sequence[str], actual: Sequence[str], notes: Iterable[str] = ()
) -> Check:
    """Equal line by line, order included."""
    status = PASS if list(expected) == list(actual) else FAIL
    return Check(key, title, status, list(expected), list(actual), list(notes))


def contains(
    key: str, title: str, expected: Sequence[str], actual: Sequence[str], notes: Iterable[str] = ()
) -> Check:
    """Every expected line present in the actual ones (which may hold more)."""
    status = PASS if all(line in actual for line in expected) else FAIL
    return Check(key, title, status, list(expected), list(actual), list(notes))


def truth(key: str, title: str, expected: str, actual: str, ok: bool) -> Check:
    """A fact whose comparison the caller made (a ping's outcome, say)."""
    return Check(key, title, PASS if ok else FAIL, [expected], [actual])


def skipped(key: str, title: str, reason: str) -> Check:
    return Check(key, title, SKIP, [], [], [reason])


def with_extras(
    key: str,
    title: str,
    expected: Sequence[str],
    actual: Sequence[str],
    extras: Mapping[str, str],
) -> Check:
    """``expected`` exactly, then only known extra arguments (each noted with its reason)."""
    head, tail = list(actual[: len(expected)]), list(actual[len(expected) :])
    notes = [f"extra {arg}, fixes: {extras[arg]}" for arg in tail if arg in extras]
    unknown = [arg for arg in tail if arg not in extras]
    notes += [f"unexpected extra argument {arg}" for arg in unknown]
    ok = head == list(expected) and not unknown
    return Check(key, title, PASS if ok else FAIL, list(expected), list(actual), notes)


def summary(checks: Sequence[Check]) -> tuple[int, int, int]:
    """(passed, failed, skipped)."""
    count = {s: sum(1 for c in checks if c.status == s) for s in (PASS, FAIL, SKIP)}
    return count[PASS], count[FAIL], count[SKIP]


def render(check: Check, *, ascii_only: bool = False, verbose: bool = False) -> list[str]:
    """The check's line, then (on failure, or verbose) what was expected and seen."""
    mark = (ASCII_MARKS if ascii_only else MARKS)[check.status]
    out = [f"{mark} {check.title}"]
    if check.status == SKIP:
        out[0] += f": skipped ({'; '.join(check.notes)})"
        return out
    one_line = len(check.expected) <= 1 and len(check.actual) <= 1
    if one_line:
        seen = check.actual[0] if check.actual else "(nothing)"
        if check.status == FAIL:
            want = check.expected[0] if check.expected else "(nothing)"
            out += [f"      expected: {want}", f"      actual:   {seen}"]
        else:
            out[0] += f": {seen}"
    elif check.status == FAIL:
        out += ["      " + d for d in diff(check.expected, check.actual)]
    elif verbose:
        out += [f"      {line}" for line in check.actual]
    out += [f"      note: {note}" for note in check.notes]
    return out


def diff(expected: Sequence[str], actual: Sequence[str]) -> list[str]:
    """A unified diff, expected (the seed) -> actual (the lab), one line of context."""
    lines = difflib.unified_diff(
        list(expected), list(actual), "expected (seed)", "actual (lab)", n=1, lineterm=""
    )
    return list(lines) or ["(same lines, different order or whitespace)"]
