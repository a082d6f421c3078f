"""A daemon that cannot start says so in one line (it used to log it and print it again)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def start(program: str, flagfile: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / program), "--flagfile", str(flagfile)],
        capture_output=True, text=True, timeout=60, env=env,
    )


def test_unmigrated_database(tmp_path: Path) -> None:
    flagfile = tmp_path / "nova.conf"
    flagfile.write_text(f"--state_path={tmp_path}/state\n--lock_path={tmp_path}/lock\n")
    out = start("novanet-network", flagfile)
    assert out.returncode != 0
    assert out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("novanet-network: error: ")
    assert "novanet-manage db sync" in out.stderr


def test_unexpected_failure_is_one_line_too(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    flagfile = tmp_path / "nova.conf"
    flagfile.write_text(f"--state_path={tmp_path}/file/state\n")
    out = start("novanet-network", flagfile)
    assert out.returncode == 1
    assert out.stderr == f"novanet-network: error: cannot start: [Errno 20] Not a directory: '{tmp_path}/file/state'\n"


def test_under_journald_the_line_has_its_priority(tmp_path: Path) -> None:
    import os

    flagfile = tmp_path / "nova.conf"
    flagfile.write_text(f"--state_path={tmp_path}/state\n--metrics_listen=1.2.3.4:99999\n")
    with open(tmp_path / "journal", "w") as journal:
        st = os.fstat(journal.fileno())
        env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        code = subprocess.run(
            [str(BIN / "novanet-compute"), "--flagfile", str(flagfile)],
            stderr=journal, timeout=60, env=env,
        ).returncode
    assert code == 2
    assert (tmp_path / "journal").read_text() == (
        "<3>novanet-compute: error: metrics_listen '1.2.3.4:99999': the port must be a number 0-65535\n"
    )


@pytest.mark.parametrize(
    "program",
    ["novanet-network", "novanet-compute", "novanet-metadata", "novanet-manage", "novanet-lab",
     "novanet-dhcpbridge"],
)
def test_version(program: str) -> None:
    from novanet import __version__

    out = subprocess.run([str(BIN / program), "--version"], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (0, f"{program} {__version__}\n", "")


def test_dhcpbridge_help_answers() -> None:
    out = subprocess.run([str(BIN / "novanet-dhcpbridge"), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("usage: novanet-dhcpbridge init")
    assert "NOVANET_NETWORK_ID" in out.stdout
