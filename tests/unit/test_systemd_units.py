"""The systemd units: `systemd-analyze verify` clean, `security` below 5, notify and reload.

systemd need not run (it is not PID 1 in containers): both commands work on
unit files offline. ExecStart points at this virtualenv's programs, as an
operator adjusts it for theirs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lib.units import UNITS, capabilities, directives

SERVICES = ["novanet-network.service", "novanet-compute.service", "novanet-metadata.service"]
BIN = Path(sys.executable).parent


@pytest.fixture
def unit_dir(tmp_path: Path) -> Path:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("needs systemd-analyze (package systemd)")
    for name in SERVICES:
        text = (UNITS / name).read_text().replace("/usr/local/bin/", f"{BIN}/")
        (tmp_path / name).write_text(text)
    return tmp_path


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def exposure(unit_dir: Path, name: str) -> float:
    out = analyze("security", "--offline=yes", f"./{name}", cwd=unit_dir)
    assert out.returncode == 0, out.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout)
    assert match, out.stdout[-500:]
    return float(match.group(1))


@pytest.mark.parametrize("name", SERVICES)
def test_verify_is_clean(unit_dir: Path, name: str) -> None:
    out = analyze("verify", "--man=no", f"./{name}", cwd=unit_dir)
    assert (out.returncode, out.stderr, out.stdout) == (0, "", "")


@pytest.mark.parametrize("name", SERVICES)
def test_security_exposure_below_5(unit_dir: Path, name: str) -> None:
    assert exposure(unit_dir, name) < 5.0


def test_the_netns_drop_in_stays_below_5(unit_dir: Path) -> None:
    drop_in = unit_dir / "novanet-compute.service.d"
    drop_in.mkdir()
    shutil.copy(UNITS / "novanet-compute-netns.conf", drop_in / "netns.conf")
    out = analyze("verify", "--man=no", "./novanet-compute.service", cwd=unit_dir)
    assert (out.returncode, out.stderr) == (0, "")
    assert 2.0 < exposure(unit_dir, "novanet-compute.service") < 5.0


def test_a_broken_unit_is_noticed(unit_dir: Path) -> None:
    """The checks above can fail: an unknown key and a bad value are reported."""
    path = unit_dir / "novanet-network.service"
    path.write_text(path.read_text().replace("NoNewPrivileges=yes", "NoNewPrivileges=yes\nFooBar=1"))
    assert "Unknown key 'FooBar'" in analyze("verify", "--man=no", f"./{path.name}", cwd=unit_dir).stderr
    path.write_text(
        "\n".join(
            line for line in path.read_text().splitlines() if not line.startswith(("CapabilityBounding", "SystemCall"))
        )
    )
    assert exposure(unit_dir, path.name) > 5.0


@pytest.mark.parametrize("name", SERVICES)
def test_notify_watchdog_reload(name: str) -> None:
    assert directives(name, "Type") == ["notify"]
    assert directives(name, "ExecReload") == ["/bin/kill -HUP $MAINPID"]
    assert int(directives(name, "WatchdogSec")[0]) > 0
    assert directives(name, "NoNewPrivileges") == ["yes"]
    wants = " ".join(directives(name, "Wants")).split()
    after = " ".join(directives(name, "After")).split()
    for local in ("rabbitmq-server.service", "mariadb.service", "postgresql.service"):
        assert (local in wants) == (local in after), local


def test_who_may_do_what() -> None:
    assert capabilities("novanet-metadata.service") == []
    assert directives("novanet-metadata.service", "User") == ["novanet-metadata"]
    assert capabilities("novanet-compute.service") == ["net_admin"]
    assert sorted(capabilities("novanet-network.service")) == [
        "kill", "net_admin", "net_bind_service", "net_raw", "setgid", "setuid"
    ]
    sysusers = (UNITS / "novanet.sysusers").read_text()
    assert re.search(r"^u novanet-metadata ", sysusers, re.M)
