"""Progress on stderr for novanet-manage commands that may take more than a second.

Quiet when the work is quick (the usual /24): the first line appears once a
second has passed, then at most one per second, and a last line when done.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

QUIET_FOR = 1.0  # seconds before the first line
EVERY = 1.0  # seconds between lines


class Progress:
    def __init__(
        self,
        what: str,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.stream = stream or sys.stderr
        self.clock = clock
        self.started = clock()
        self.last_shown: float | None = None
        self.done = 0
        self.total = 0

    def update(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        now = self.clock()
        if now - self.started < QUIET_FOR:
            return
        if self.last_shown is not None and now - self.last_shown < EVERY:
            return
        self.last_shown = now
        percent = 100 * done // total if total else 100
        self.stream.write(
            f"{self.what}: {done:,} of {total:,} addresses written ({percent}%, "
            f"{now - self.started:.0f} s)\n"
        )
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.last_shown is not None and kind is None:
            self.stream.write(
                f"{self.what}: {self.done:,} addresses written in "
                f"{self.clock() - self.started:.1f} s\n"
            )
            self.stream.flush()
