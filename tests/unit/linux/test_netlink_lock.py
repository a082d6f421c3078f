"""LockSet: mutual exclusion across threads and processes, with a timeout."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from novanet.linux.lock import LockSet, LockTimeout


def test_threads_never_overlap(tmp_path: Path) -> None:
    locks = LockSet(str(tmp_path / "locks"))
    inside: list[int] = []
    overlaps: list[int] = []

    def worker(n: int) -> None:
        for _ in range(20):
            with locks.lock("bridge-br100"):
                if inside:
                    overlaps.append(n)
                inside.append(n)
                time.sleep(0.0005)
                inside.pop()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []
    assert (tmp_path / "locks/novanet-bridge-br100.lock").exists()


def test_other_lock_sets_and_names_are_independent(tmp_path: Path) -> None:
    first, second = LockSet(str(tmp_path)), LockSet(str(tmp_path), timeout=0.05)
    with first.lock("a"):
        with second.lock("b"):
            pass
        # same file, another open file description
        with pytest.raises(LockTimeout), second.lock("a"):
            pass


def test_lock_held_by_another_process_times_out_naming_it(tmp_path: Path) -> None:
    locks = LockSet(str(tmp_path), timeout=0.2)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from novanet.linux.lock import LockSet\n"
            f"with LockSet({str(tmp_path)!r}).lock('vif'):\n"
            "    print('held', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockTimeout, match=f"last taken by pid {holder.pid}"), locks.lock("vif"):
            pass
    finally:
        holder.kill()
        holder.wait()
    with locks.lock("vif"):  # released when the holder died
        pass


def test_invalid_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LockSet(str(tmp_path)).path("../x")
