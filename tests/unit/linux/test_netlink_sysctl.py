"""Sysctl reads and writes files under a proc root (a tmp dir here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from novanet.linux.sysctl import BridgeNetfilterMissing, Sysctl, SysctlError


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    (tmp_path / "net/ipv4").mkdir(parents=True)
    (tmp_path / "net/ipv4/ip_forward").write_text("0\n")
    return tmp_path


def test_set_writes_only_when_different(proc: Path) -> None:
    sysctl = Sysctl(str(proc))
    assert sysctl.get("net.ipv4.ip_forward") == "0"
    assert sysctl.enable_ip_forward()
    assert (proc / "net/ipv4/ip_forward").read_text() == "1\n"
    assert not sysctl.enable_ip_forward()


def test_slash_names_allow_dotted_levels(proc: Path) -> None:
    (proc / "net/ipv4/conf/eth0.100").mkdir(parents=True)
    (proc / "net/ipv4/conf/eth0.100/forwarding").write_text("0\n")
    sysctl = Sysctl(str(proc))
    assert sysctl.set("net/ipv4/conf/eth0.100/forwarding", 1)
    assert sysctl.get("net/ipv4/conf/eth0.100/forwarding") == "1"
    with pytest.raises(ValueError):
        sysctl.path("net/../../etc/passwd")


def test_missing_parameter_is_a_clear_error(proc: Path) -> None:
    with pytest.raises(SysctlError, match="cannot read net.ipv4.nope"):
        Sysctl(str(proc)).get("net.ipv4.nope")


def test_bridge_nf_call_iptables(proc: Path) -> None:
    sysctl = Sysctl(str(proc))
    with pytest.raises(BridgeNetfilterMissing, match="br_netfilter kernel module is not loaded"):
        sysctl.ensure_bridge_nf_call_iptables()
    (proc / "net/bridge").mkdir()
    (proc / "net/bridge/bridge-nf-call-iptables").write_text("0\n")
    assert sysctl.ensure_bridge_nf_call_iptables()
    assert sysctl.get("net.bridge.bridge-nf-call-iptables") == "1"
