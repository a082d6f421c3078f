"""The seed's iptables listings, rebuilt through the manager on the fake.

The rule strings below only set up the model (the real rule generators live
elsewhere); the expected state is the seed's own listing files. The helper
functions are shared with the functional tests.
"""

from __future__ import annotations

from pathlib import Path

from novanet.linux.fakes.iptables import FakeIptables
from novanet.linux.iptables import IptablesManager, Runner

LISTINGS = Path("/work/shared/seed/listings")


def seed_listing(name: str) -> list[str]:
    return (LISTINGS / name).read_text().splitlines()


def declare_network(mgr: IptablesManager) -> None:
    """The controller's nova-network rules of the seed."""
    filt, nat = mgr.ipv4["filter"], mgr.ipv4["nat"]
    filt.add_rule("FORWARD", "-i br100 -j ACCEPT")
    filt.add_rule("FORWARD", "-o br100 -j ACCEPT")
    for port in (67, 53):
        for proto in ("udp", "tcp"):
            # Written the short way on purpose: the normaliser adds -m PROTO.
            filt.add_rule("INPUT", f"-i br100 -p {proto} --dport {port} -j ACCEPT")
    nat.add_rule("POSTROUTING", "-s 10.0.0.0/24 -d 192.168.56.200 -j ACCEPT")
    nat.add_rule("POSTROUTING", "-s 10.0.0.0/24 -d 10.128.0.0/24 -j ACCEPT")
    nat.add_rule(
        "POSTROUTING", "-s 10.0.0.0/24 -d 10.0.0.0/24 -m conntrack ! --ctstate DNAT -j ACCEPT"
    )
    nat.add_rule(
        "PREROUTING",
        "-d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT "
        "--to-destination 192.168.56.200:8775",
    )
    nat.add_rule("snat", "-s 10.0.0.0/24 -j SNAT --to-source 192.168.56.200")


def declare_api(mgr: IptablesManager) -> None:
    """novanet-metadata's rule on the controller."""
    mgr.ipv4["filter"].add_rule(
        "INPUT", "-d 192.168.56.200/32 -p tcp -m tcp --dport 8775 -j ACCEPT"
    )


def instance_rules(dhcp_server: str = "10.0.0.1", cidr: str = "10.0.0.0/24") -> list[str]:
    return [
        "-m state --state INVALID -j DROP",
        "-m state --state ESTABLISHED,RELATED -j ACCEPT",
        "-j $provider",
        f"-s {dhcp_server} -p udp --sport 67 --dport 68 -j ACCEPT",
        f"-s {cidr} -j ACCEPT",
        "-j $sg-fallback",
    ]


def declare_compute(mgr: IptablesManager, instances: dict[int, str] | None = None) -> None:
    """The compute host's rules of the seed: instance 9 at 10.0.0.2 by default."""
    filt = mgr.ipv4["filter"]
    filt.add_rule("FORWARD", "-i br100 -j ACCEPT")
    filt.add_rule("FORWARD", "-o br100 -j ACCEPT")
    filt.add_chain("provider")
    filt.add_chain("sg-fallback")
    filt.add_rule("sg-fallback", "-j DROP")
    if instances is None:
        instances = {9: "10.0.0.2"}
    for inst_id, address in instances.items():
        add_instance(mgr, inst_id, address)


def add_instance(mgr: IptablesManager, inst_id: int, address: str) -> None:
    filt = mgr.ipv4["filter"]
    filt.add_chain(f"inst-{inst_id}")
    filt.set_rules(f"inst-{inst_id}", instance_rules())
    filt.add_rule("local", f"-d {address} -j $inst-{inst_id}")


def remove_instance(mgr: IptablesManager, inst_id: int) -> None:
    mgr.ipv4["filter"].remove_chain(f"inst-{inst_id}")


def controller(runner: Runner) -> tuple[IptablesManager, IptablesManager]:
    network = IptablesManager("network", runner)
    declare_network(network)
    api = IptablesManager("api", runner)
    declare_api(api)
    return network, api


def test_controller_listings_network_first() -> None:
    fake = FakeIptables()
    network, api = controller(fake)
    network.full_sync()
    api.full_sync()
    assert fake.listing("filter") == seed_listing("controller-iptables-filter.txt")
    assert fake.listing("nat") == seed_listing("controller-iptables-nat.txt")


def test_controller_listings_api_first() -> None:
    # The order of the jumps does not depend on which daemon started first.
    fake = FakeIptables()
    network, api = controller(fake)
    api.full_sync()
    network.full_sync()
    assert fake.listing("filter") == seed_listing("controller-iptables-filter.txt")
    assert fake.listing("nat") == seed_listing("controller-iptables-nat.txt")


def test_controller_checks_are_quiet_once_converged() -> None:
    fake = FakeIptables()
    network, api = controller(fake)
    network.full_sync()
    api.full_sync()
    network.check_and_repair()  # api's writes are news to network: one read
    saves = fake.saves
    assert network.check_and_repair() == []
    assert api.check_and_repair() == []
    assert fake.saves == saves
    assert fake.listing("filter") == seed_listing("controller-iptables-filter.txt")


def test_compute_listing() -> None:
    fake = FakeIptables()
    compute = IptablesManager("compute", fake)
    declare_compute(compute)
    compute.full_sync()
    assert fake.listing("filter") == seed_listing("compute-1-iptables-filter.txt")


def test_compute_listing_built_by_apply_before_full_sync() -> None:
    fake = FakeIptables()
    compute = IptablesManager("compute", fake)
    declare_compute(compute, {})
    compute.apply()
    add_instance(compute, 9, "10.0.0.2")
    compute.apply()
    assert fake.listing("filter") == seed_listing("compute-1-iptables-filter.txt")
