"""novanet-manage diagnose on one lab: silent when healthy, then names each fault injected.

The periodic repairs are made rare (conf_extra) so that nothing heals while
the test looks; faults are accumulated and diagnose is run once for all of
them, then once more with a compute agent stopped. The compute agents'
resync is made rare too: it would repair the chains, sets and anti-spoofing
entries broken here before diagnose looks.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from novanet.lab.daemons import ManageError
from novanet.lab.topology import FLOATING_INTERFACE
from tests.e2e.helpers import E2E, boot_seed_instances, running_cloud

pytestmark = E2E

NEVER = "3600"  # seconds: no drift repair during the test
FLOAT = "192.168.56.230"
SET_PREFIX = "nova-compute-group-"


def diagnose(cloud: Any) -> tuple[int, dict[str, Any]]:
    try:
        out, code = cloud.novanet.manage("diagnose", "--format", "json", timeout=120), 0
    except ManageError as exc:
        out, code = exc.error.stdout, exc.exit_code
    return code, json.loads(out)


def named(report: dict[str, Any]) -> set[tuple[str, str]]:
    return {(p["host"], p["object"]) for p in report["problems"]}


def test_diagnose_is_silent_when_healthy_and_names_every_fault() -> None:
    conf = {
        "iptables_check_interval": NEVER,
        "bridge_check_interval": NEVER,
        "dnsmasq_check_interval": NEVER,
        "resync_interval": NEVER,
    }
    with running_cloud(conf_extra=conf) as cloud:
        lab, manage = cloud.lab, cloud.novanet.manage
        cirros, other = boot_seed_instances(cloud)
        manage("secgroup", "create", "web")
        manage("secgroup", "add-group-rule", "web", "web", "tcp", "22", "22")
        for name in ("cirros", "cirros-2"):
            manage("instance", "add-secgroup", name, "web")
        group = cloud.novanet.manage_json("secgroup", "show", "web")[0]["id"]
        manage("floating", "associate", FLOAT, "cirros")

        code, report = diagnose(cloud)
        assert (code, report["problems"]) == (0, []), report
        assert report["healthy"] and report["checked"] >= 3
        text = manage("diagnose")
        assert text == ""

        ctl, c1, c2 = "controller-1", "compute-1", "compute-2"
        networks = os.path.join(lab.paths.node_dir(ctl), "networks")
        lab.execute(c2, ["ip", "link", "del", "br100"])
        lab.execute(ctl, ["ip", "addr", "del", f"{FLOAT}/32", "dev", FLOATING_INTERFACE])
        with open(os.path.join(networks, "nova-br100.pid")) as handle:
            lab.execute(ctl, ["kill", handle.read().strip()])
        with open(os.path.join(networks, "nova-br100.conf"), "a") as handle:
            handle.write("fa:16:3e:00:00:99,stale.novalocal,10.0.0.99\n")
        lab.execute(ctl, ["sysctl", "-qw", "net.ipv4.ip_forward=0"])
        lab.execute(c1, ["ip", "link", "set", "eth2", "promisc", "off"])
        lab.execute(c1, ["ip", "addr", "add", "10.0.0.77/24", "dev", "br100"])
        lab.execute(c1, ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"])
        # the gateway address no longer first on the controller's bridge
        lab.execute(ctl, ["ip", "addr", "del", "10.0.0.1/24", "dev", "br100"])
        lab.execute(ctl, ["ip", "addr", "add", "192.168.77.1/24", "dev", "br100"])
        lab.execute(ctl, ["ip", "addr", "add", "10.0.0.1/24", "brd", "+", "dev", "br100"])
        metadata = cloud.novanet.metadata_running()
        if metadata:
            lab.stop_process(ctl, "metadata")
        chain = f"nova-compute-inst-{cirros.instance.id}"
        lab.execute(c1, ["iptables", "-F", chain])
        lab.execute(c1, ["ipset", "del", f"{SET_PREFIX}{group}", other.instance.address])
        element = f'{{ "{cirros.instance.device}" . {cirros.instance.address} }}'
        lab.execute(c1, ["nft", "delete", "element", "bridge", "novanet", "vif_ips", element])

        code, report = diagnose(cloud)
        assert code == 1 and not report["healthy"]
        expected = {
            (c2, "br100"),
            (ctl, f"{FLOATING_INTERFACE} {FLOAT}/32"),
            (ctl, "dnsmasq (br100)"),
            (ctl, "hostsfile (br100)"),
            (ctl, "net.ipv4.ip_forward"),
            (c1, "eth2"),
            (c1, f"iptables filter {chain}"),
            (c1, f"ipset {SET_PREFIX}{group}"),
            (c1, "table bridge novanet"),
            (c1, "net.bridge.bridge-nf-call-iptables"),
            (ctl, "br100"),
        }
        assert expected <= named(report), report
        assert not [p for p in report["problems"] if p["problem"].startswith(p["object"])]
        holds = [p for p in report["problems"] if (p["host"], p["object"]) == (c1, "br100")]
        assert [p["problem"] for p in holds] == [
            "holds IPv4 10.0.0.77/24 (a compute host's bridge has none)"
        ]
        gateway = [p for p in report["problems"] if (p["host"], p["object"]) == (ctl, "br100")]
        assert "first IPv4 address is 192.168.77.1/24" in gateway[0]["problem"]
        if metadata:  # the port closed; or, once its heartbeat is old, the service down
            assert {(ctl, "metadata"), (ctl, "novanet-metadata")} & named(report), report
        assert any("within 3600 s" in p["action"] for p in report["problems"])
        with pytest.raises(ManageError) as failed:
            manage("diagnose")
        lines = failed.value.error.stdout.splitlines()
        print("\n".join(lines))  # the README's example (pytest -s)
        assert len(lines) == len(report["problems"])
        assert all(line.startswith(f"{c2}: br100: ") for line in lines if c2 in line[:10]), lines
        assert all(line.count(": ") >= 2 and "; " in line for line in lines), lines

        lab.stop_process(c2, "compute")
        code, report = diagnose(cloud)
        assert code == 1 and (c2, "novanet-compute") in named(report), report
        # the lines: host, object, problem; action
        with pytest.raises(ManageError) as failed:
            manage("diagnose")
        lines = failed.value.error.stdout.splitlines()
        assert any(line.startswith(f"{c2}: novanet-compute: ") for line in lines), lines

        # RabbitMQ out of reach (the controller's relay to it stopped): one line
        # naming it, and no daemon asked (each would only time out).
        lab.stop_process(ctl, "amqp-relay")
        code, report = diagnose(cloud)
        broker = [p for p in report["problems"] if p["object"] == "RabbitMQ"]
        assert code == 1 and len(broker) == 1, report
        assert broker[0]["problem"].startswith("unreachable: "), broker
        assert "guest:guest" not in broker[0]["problem"], broker  # no password shown
        assert not [p for p in report["problems"] if "did not answer" in p["problem"]], report
