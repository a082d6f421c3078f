"""/proc/<pid>/stat and status: one parser, comm with spaces and parentheses included."""

from __future__ import annotations

import os

import pytest

from novanet.linux import procfs

LINE = (
    "4242 (a) b (c d)) S 1 4242 4242 0 -1 4194560 100 0 0 0 "
    "7 3 11 13 20 0 1 0 987654 1000000 100 18446744073709551615"
)


def test_comm_may_hold_spaces_and_parentheses() -> None:
    stat = procfs.parse_stat(LINE)
    assert stat == procfs.ProcStat(
        state="S", ppid=1, pgrp=4242, utime=7, stime=3, cutime=11, cstime=13, starttime=987654
    )
    assert stat.alive and stat.cpu_ticks == 10 and stat.children_ticks == 24


@pytest.mark.parametrize("state", ["Z", "X"])
def test_zombies_are_not_alive(state: str) -> None:
    assert not procfs.parse_stat(LINE.replace(" S ", f" {state} ", 1)).alive


@pytest.mark.parametrize("text", ["", "4242 (a S 1", "4242 (a) S 1 2"])
def test_malformed_lines_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        procfs.parse_stat(text)


def test_this_process(tmp_path) -> None:
    stat = procfs.stat(os.getpid())
    assert stat is not None and stat.state == "R" and stat.ppid == os.getppid()
    assert os.getpid() in procfs.pids()
    status = procfs.status(os.getpid())
    assert status is not None and int(status["Pid"]) == os.getpid()
    assert procfs.stat(os.getpid(), proc=str(tmp_path)) is None  # gone (or no such /proc)
    assert procfs.status(2**22 + 1) is None
