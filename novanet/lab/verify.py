"""The seed's observations as checks: each one observed in the lab and compared.

Used by ``novanet-lab demo`` and by tests/e2e (which assert the same checks
one by one). Kernel state is observed with the first instance alone (the
article's state: one VM), the pings once the second instance runs.
"""

from __future__ import annotations

import dataclasses

from novanet.lab import checks, expect, seeddata
from novanet.lab.checks import Check
from novanet.lab.instances import Instance, Instances, PingResult
from novanet.lab.observe import Observer

# Keys of the checks, in the demo's order.
KERNEL_KEYS = (
    "controller.nova_conf",
    "controller.ip_a",
    "controller.bridges",
    "controller.routes",
    "controller.dnsmasq",
    "controller.hostsfile",
    "controller.iptables_filter",
    "controller.iptables_nat",
    "compute.ip_a",
    "compute.bridges",
    "compute.iptables_filter",
    "instance.address",
    "instance.routes",
)
PING_KEYS = (
    "ping.controller_to_instance",
    "ping.compute_to_instance",
    "ping.instance_to_instance",
    "ping.instance_to_outside",
)
METADATA_KEY = "instance.metadata"


def kernel_checks(observer: Observer, setup: expect.Setup, cirros: Instance) -> list[Check]:
    """Controller, compute host and guest state against the seed's listings."""
    ctl = observer.controller
    cmp = cirros.host
    out = [
        checks.exact(
            "controller.nova_conf",
            f"{ctl}: nova.conf starts with the seed's five lines",
            expect.nova_conf_head(),
            observer.nova_conf(ctl)[:5],
        ),
        checks.exact(
            "controller.ip_a",
            f"{ctl}: ip a (eth1, eth2 in br100 promiscuous, br100 10.0.0.1/24)",
            expect.controller_interfaces(),
            observer.interfaces(ctl, ["eth1", "eth2", "br100"]),
        ),
        checks.exact(
            "controller.bridges",
            f"{ctl}: brctl show",
            expect.controller_bridges(),
            observer.bridges(ctl),
        ),
        checks.exact(
            "controller.routes",
            f"{ctl}: route -n",
            expect.controller_routes(),
            observer.routes(ctl),
        ),
        checks.with_extras(
            "controller.dnsmasq",
            f"{ctl}: dnsmasq command line",
            expect.dnsmasq_argv(setup),
            observer.dnsmasq_argv(setup),
            expect.DNSMASQ_EXTRAS,
        ),
        checks.exact(
            "controller.hostsfile",
            f"{ctl}: cat {setup.networks_path}/nova-br100.conf",
            expect.hostsfile(),
            observer.hostsfile(setup),
        ),
        checks.exact(
            "controller.iptables_filter",
            f"{ctl}: iptables -t filter -S",
            expect.controller_filter(setup),
            observer.iptables(ctl, "filter"),
        ),
        checks.exact(
            "controller.iptables_nat",
            f"{ctl}: iptables -t nat -S",
            expect.controller_nat(setup),
            observer.iptables(ctl, "nat"),
        ),
        checks.exact(
            "compute.ip_a",
            f"{cmp}: ip a (br100 without address, vnet0 fe:16:3e:2c:e8:ec)",
            expect.compute_interfaces(),
            observer.interfaces(cmp, ["br100", cirros.device or "vnet0"]),
        ),
        checks.exact(
            "compute.bridges",
            f"{cmp}: brctl show",
            expect.compute_bridges(),
            observer.bridges(cmp),
        ),
        checks.exact(
            "compute.iptables_filter",
            f"{cmp}: iptables -S (inst-9 of the article is inst-{cirros.id} here)",
            expect.compute_filter(setup, cirros.id),
            observer.iptables(cmp, "filter"),
        ),
        checks.exact(
            "instance.address",
            f"{cirros.display_name}: ip a (eth0)",
            expect.guest_interface(),
            observer.guest_interface(cirros),
        ),
        checks.exact(
            "instance.routes",
            f"{cirros.display_name}: route -n",
            expect.guest_routes(),
            observer.guest_routes(cirros),
        ),
    ]
    return out


def ping_text(result: PingResult) -> str:
    """A ping's outcome in one line: its first reply and its statistics."""
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    if result.not_permitted:
        return next(ln for ln in lines if "Operation not permitted" in ln)
    replies = [ln for ln in lines if " bytes from " in ln]
    stats = [ln for ln in lines if "packet loss" in ln or "packets transmitted" in ln]
    shown = (replies[:1] or []) + (stats[:1] or [])
    return " | ".join(shown) or (lines[-1] if lines else f"exit code {result.exit_code}")


BLOCKED = "blocked (allow_same_net_traffic=false: only DHCP from 10.0.0.1 gets in)"


def ping_checks(
    instances: Instances, cirros: Instance, other: Instance, setup: expect.Setup
) -> list[Check]:
    """The article's pings, plus the two it describes but could not show yet.

    With allow_same_net_traffic=false (the article's NOTE) a new connection
    to an instance is dropped on its compute host, from the controller too:
    nova accepted only the DHCP server's answers then, and so does novanet.
    """
    ctl = instances.novanet.controller
    gateway = seeddata.GATEWAY_IP
    same_net = setup.allow_same_net_traffic

    def reach(key: str, title: str, source: str, target: str, want: str) -> Check:
        result = instances.ping(source, target, count=3 if same_net else 2)
        if same_net or key == "ping.instance_to_outside":
            return checks.truth(key, title, want, ping_text(result), result.ok)
        title += " must be blocked"
        return checks.truth(key, title, BLOCKED, ping_text(result), not result.ok)

    out = [
        reach(
            "ping.controller_to_instance",
            f"ping {cirros.address} from {ctl}",
            ctl,
            cirros.name,
            "replies (" + seeddata.PING_CONTROLLER_TO_INSTANCE + ")",
        )
    ]
    # busybox: iputils' ping hides the EPERM the DROP gives (see instances.ping_argv).
    result = instances.ping(cirros.host, cirros.name, count=1, tool="busybox")
    out.append(
        checks.truth(
            "ping.compute_to_instance",
            f"ping {cirros.address} from {cirros.host}",
            seeddata.PING_COMPUTE_TO_INSTANCE + " (or sendto:)",
            ping_text(result),
            not result.ok and result.not_permitted,
        )
    )
    out.append(
        reach(
            "ping.instance_to_instance",
            f"ping {cirros.address} from {other.display_name} on {other.host}",
            other.name,
            cirros.name,
            "replies",
        )
    )
    out.append(
        reach(
            "ping.instance_to_outside",
            f"ping {gateway} from {cirros.display_name} (SNAT on {ctl})",
            cirros.name,
            gateway,
            "replies",
        )
    )
    return out


@dataclasses.dataclass(frozen=True)
class CloudSetup:
    """What the guest's cloud-setup got from the metadata service."""

    iid: str | None
    tries: int
    uptime: float  # seconds from `instance create` to the answer


def fetch_instance_id(instances: Instances, cirros: Instance, booted_at: float) -> CloudSetup:
    """As cirros does right after DHCP: GET meta-data/instance-id, up to 30 tries."""
    iid, tries, uptime = instances.cloud_setup(cirros, booted_at=booted_at)
    return CloudSetup(iid, tries, uptime)


def metadata_check(cirros: Instance, fetched: CloudSetup | None) -> Check:
    """The instance-id the guest fetched, next to the seed's console line."""
    title = f"{cirros.display_name}: instance-id from 169.254.169.254 (cloud-setup)"
    if fetched is None:
        return checks.skipped(METADATA_KEY, title, "novanet-metadata not installed")
    want = expect.instance_id_text(cirros.id)
    check = checks.truth(
        METADATA_KEY,
        title,
        f"iid={want}",
        expect.cloud_setup_line(fetched.iid, fetched.tries, fetched.uptime)
        if fetched.iid
        else f"no answer after {fetched.tries} tries",
        fetched.iid == want,
    )
    check.notes.append(f"seed: {seeddata.CLOUD_SETUP_LINE}")
    return check
