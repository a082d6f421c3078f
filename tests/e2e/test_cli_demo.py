"""The README's main command, as a user runs it: ``novanet-lab demo``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from novanet.lab import lab as lab_mod
from novanet.lab import procs
from tests.e2e.helpers import E2E, assert_no_leftovers, require_e2e, wait_for
from tests.functional.test_lab_fabric import TEST_BASE, unique_lab_name

pytestmark = E2E


def test_novanet_lab_demo_matches_the_seed_and_cleans_up() -> None:
    require_e2e()
    name = unique_lab_name()
    lab = lab_mod.Lab(name, TEST_BASE)
    try:
        proc = subprocess.run(
            _cli("demo", "--name", name),
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        )
    finally:
        lab.down()
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    lines = output.splitlines()
    assert lines[-1].startswith("PASS: demo finished in "), output  # its time: not asserted
    assert any(line.startswith("[") and "service list:" in line for line in lines)
    marks = [
        line.strip()[0]
        for line in lines
        if line.startswith("  ") and line.strip()[:1] in "\u2713\u2717"
    ]
    assert marks and set(marks) == {"\u2713"}, output
    assert f"lab {name} removed" in output
    # the seed's observations, counted as before; the floating IP section apart
    assert "18 of 18 observations match the seed" in output, output
    assert "6 of 6 floating IP observations pass" in output, output
    assert_no_leftovers(lab)


def _cli(*args: str) -> list[str]:
    program = os.path.join(os.path.dirname(sys.executable), "novanet-lab")
    return [program, "--base-dir", TEST_BASE, *args]


def test_ctrl_c_during_the_demo_removes_the_lab() -> None:
    require_e2e()
    name = unique_lab_name()
    lab = lab_mod.Lab(name, TEST_BASE)
    proc = subprocess.Popen(
        _cli("demo", "--name", name),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "service list:" in line:  # the daemons run: the worst moment to stop
                proc.send_signal(signal.SIGINT)
                break
        rest = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
        lab.down()
    assert proc.returncode == 130, rest
    assert f"lab {name} removed" in rest
    assert_no_leftovers(lab)


def test_down_after_up_was_killed_while_starting_daemons() -> None:
    require_e2e()
    name = unique_lab_name()
    lab = lab_mod.Lab(name, TEST_BASE)
    proc = subprocess.Popen(
        _cli("up", "--name", name), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        started = wait_for(lambda: lab.process_running("compute-1", "compute"), 60, 0.02)
        assert started, "novanet-compute never started"
    finally:
        proc.send_signal(signal.SIGKILL)  # a crash, with daemons and dnsmasq running
        proc.wait()
    records = lab.launcher.records([n.name for n in lab.topology.nodes])
    assert {r.name for r in records} >= {"network", "compute", "amqp-relay"}
    down = subprocess.run(_cli("down", "--name", name), capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    assert_no_leftovers(lab)
    assert not [r for r in records if procs.is_running(r.pid, r.starttime)]
    again = subprocess.run(_cli("down", "--name", name), capture_output=True, text=True)
    assert again.returncode == 0 and "nothing" in again.stdout
