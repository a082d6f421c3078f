"""The anti-spoofing table's meaning, read from compute-1's captured ``nft -j`` facts."""

from __future__ import annotations

from novanet.explain.bridge_eval import AntiSpoof
from tests.unit.explain.test_trace import load

MAC = "fa:16:3e:0f:ed:45"  # web1, port vnet0, 10.0.0.2


def table() -> AntiSpoof:
    return AntiSpoof(load()["facts"]["compute-1"]["nft_bridge"])


def test_the_instances_own_frames_pass() -> None:
    assert table().check("vnet0", MAC.upper(), "10.0.0.2", None).verdict == "ACCEPT"


def test_another_mac_address_or_a_dhcp_server_is_dropped() -> None:
    spoof = table()
    other_mac = spoof.check("vnet0", "fa:16:3e:08:32:b0", "10.0.0.2", None)
    assert (other_mac.verdict, other_mac.chain, other_mac.reason) == (
        "DROP", "vif", "source MAC is not the instance's",
    )  # fmt: skip
    other_ip = spoof.check("vnet0", MAC, "10.0.0.3", None)  # ssh1's address, from web1's port
    assert (other_ip.verdict, other_ip.reason) == ("DROP", "source IP is not the instance's")
    assert spoof.check("vnet0", MAC, "10.0.0.2", 67).reason == "DHCP server"


def test_ports_that_are_not_instance_ports_and_a_missing_table_filter_nothing() -> None:
    assert table().check("eth2", "08:00:27:00:00:01", "10.0.0.1", None).verdict == "ACCEPT"
    assert AntiSpoof(None).check("vnet0", "00:00:00:00:00:01", "1.2.3.4", 67).verdict == "ACCEPT"


def test_a_table_without_novanets_chains_is_not_guessed_at() -> None:
    nft = load()["facts"]["compute-1"]["nft_bridge"]
    nft["nftables"] = [i for i in nft["nftables"] if i.get("chain", {}).get("name") != "vif_ip"]
    result = AntiSpoof(nft).check("vnet0", MAC, "10.0.0.2", None)
    assert result.verdict == "UNKNOWN" and "lacks chain(s) vif_ip" in result.reason
