"""``novanet-lab demo``: the seed article, replayed and checked.

Builds the lab, starts novanet as the article's operator did, boots
``cirros`` on compute-1 with the article's MAC, compares every listing the
article shows with the lab's, boots a second instance on compute-2, runs
the article's pings (and the ones it describes), fetches the instance-id
from the metadata service as cirros does, and removes the lab again (also
on failure or Ctrl-C) unless ``keep``. Exit status 0 only if every
observation matched.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import TextIO

from novanet.lab import checks, expect, floating, instances, seeddata, verify
from novanet.lab.checks import Check
from novanet.lab.cloud import Cloud
from novanet.lab.instances import Booted
from novanet.lab.lab import Lab, default_base

CIRROS_HOST = "compute-1"
OTHER_NAME = "cirros-2"
OTHER_HOST = "compute-2"
DEFAULT_NAME = "lab"  # the lab commands' default name (cli.py)


@dataclasses.dataclass
class DemoResult:
    checks: list[Check] = dataclasses.field(default_factory=list)
    # beyond the article (floating IPs): reported apart from the seed's observations
    extra: list[Check] = dataclasses.field(default_factory=list)
    cirros: Booted | None = None
    other: Booted | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        every = [*self.checks, *self.extra]
        return self.error is None and bool(self.checks) and not any(c.failed for c in every)


class Reporter:
    """Progress lines with the elapsed time, and the checks as they come."""

    def __init__(self, out: TextIO, ascii_only: bool | None = None, verbose: bool = False) -> None:
        self.out = out
        self.started = time.monotonic()
        encoding = (getattr(out, "encoding", None) or "").lower()
        self.ascii_only = ascii_only if ascii_only is not None else "utf" not in encoding
        self.verbose = verbose

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def step(self, text: str) -> None:
        self.out.write(f"[{self.elapsed:5.1f}s] {text}\n")
        self.out.flush()

    def detail(self, text: str) -> None:
        self.out.write(f"         {text}\n")

    def heading(self, text: str) -> None:
        self.out.write(f"\n{text}\n")
        self.out.flush()

    def check(self, check: Check) -> None:
        for line in checks.render(check, ascii_only=self.ascii_only, verbose=self.verbose):
            self.out.write(f"  {line}\n")
        self.out.flush()


def _console(reporter: Reporter, booted: Booted, fetched: verify.CloudSetup | None) -> None:
    """The guest's console: udhcpc's lines, then cloud-setup's (as cirros prints them)."""
    for line in booted.lease.console.splitlines():
        if line.strip() and not line.startswith("--- novanet-lab"):
            reporter.detail(f"console: {line}")
    if fetched is not None:
        reporter.detail(f"console: cloud-setup: checking {instances.METADATA_URL}")
        if fetched.iid:
            line = expect.cloud_setup_line(fetched.iid, fetched.tries, fetched.uptime)
            reporter.detail(f"console: {line}")
        else:
            reporter.detail(f"console: cloud-setup: failed after {fetched.tries}/30 tries")


def _boot(reporter: Reporter, cloud: Cloud, name: str, host: str, mac: str | None = None) -> Booted:
    booted = cloud.instances.boot(name, host, mac)
    inst = booted.instance
    reporter.step(
        f"booted {name} on {host}: {inst.name} (id {inst.id}) {inst.address} {inst.mac} "
        f"{inst.device}; DHCP lease {booted.lease.address} via {booted.lease.router} "
        f"({booted.seconds:.1f} s)"
    )
    return booted


def scenario(
    cloud: Cloud,
    reporter: Reporter,
    result: DemoResult,
    conf_extra: Mapping[str, str] | None = None,
) -> None:
    """Everything between ``up`` and ``down``; fills ``result`` as it goes."""
    lab = cloud.lab
    ctl = lab.topology.controller
    reporter.step(
        f"building lab {lab.name}: namespaces {lab.topology.netns(ctl.name)[: -len(ctl.name)]}*, "
        f"segments br-mgmt (eth1) and br-vm (eth2), RabbitMQ vhost {lab.vhost}"
    )
    lab.up(conf_extra=conf_extra)
    nodes = ", ".join(f"{n.name} {n.management_ip}" for n in lab.topology.nodes)
    reporter.step(f"lab up: {nodes}; broker relayed to {ctl.management_ip}:5672")
    daemons = cloud.novanet.start(progress=reporter.step)
    if not any(d.name == "metadata" for d in daemons):
        reporter.detail("novanet-metadata not installed: its observation is skipped")
    up = ", ".join(
        f"{r['binary']} on {r['host']} {r['state']}" for r in cloud.novanet.last_services
    )
    reporter.step(f"novanet-manage service list: {up}")

    booted_at = time.monotonic()
    result.cirros = _boot(reporter, cloud, seeddata.CIRROS_NAME, CIRROS_HOST, seeddata.CIRROS_MAC)
    cirros = result.cirros.instance
    setup = cloud.observer.setup()
    fetched = None
    if setup.metadata:
        fetched = verify.fetch_instance_id(cloud.instances, cirros, booted_at)
    _console(reporter, result.cirros, fetched)

    reporter.heading("The seed's listings, with one instance (expected = the article's):")
    for check in verify.kernel_checks(cloud.observer, setup, cirros):
        result.checks.append(check)
        reporter.check(check)

    reporter.heading("Traffic:")
    result.other = _boot(reporter, cloud, OTHER_NAME, OTHER_HOST)
    for check in verify.ping_checks(cloud.instances, cirros, result.other.instance, setup):
        result.checks.append(check)
        reporter.check(check)
    check = verify.metadata_check(cirros, fetched)
    result.checks.append(check)
    reporter.check(check)

    reporter.heading("Beyond the article: a floating IP from the lab's pool (nova-network's way):")
    for check in floating.floating_checks(cloud, cirros):
        result.extra.append(check)
        reporter.check(check)


def explore_hints(lab: Lab) -> list[str]:
    base = "" if lab.base == os.path.realpath(default_base()) else f" --base-dir {lab.base}"
    named = "" if lab.name == DEFAULT_NAME else f" --name {lab.name}"

    def cmd(sub: str, args: str = "") -> str:
        return f"  novanet-lab{base} {sub}{named} {args}".rstrip()

    return [
        f"The lab {lab.name} stays up. Explore it:",
        cmd("exec", "controller-1 iptables -S"),
        cmd("exec", "compute-1 ip netns"),
        cmd("ping", "cirros 192.168.56.101"),
        cmd("boot", "vm3 --host compute-2"),
        cmd("status"),
        cmd("logs", "controller-1"),
        cmd("down"),
    ]


def run(
    lab: Lab,
    *,
    keep: bool = False,
    out: TextIO | None = None,
    conf_extra: Mapping[str, str] | None = None,
    verbose: bool = False,
    ascii_only: bool | None = None,
    scenario_fn: Callable[[Cloud, Reporter, DemoResult, Mapping[str, str] | None], None] = scenario,
) -> DemoResult:
    """Run the demo in ``lab`` (which must not exist yet); never raises for a failed check."""
    reporter = Reporter(out or sys.stdout, ascii_only=ascii_only, verbose=verbose)
    reporter.out.write(
        "novanet-lab demo: the seed article's FlatDHCP datacenter (single-host nova-network) "
        "in network namespaces, with novanet's daemons\n"
    )
    result = DemoResult()
    if lab.exists():
        # Never touch a lab the demo did not build.
        result.error = f"lab {lab.name} exists (remove it: novanet-lab down --name {lab.name})"
        reporter.out.write(f"novanet-lab: error: {result.error}\n")
        return result
    cloud = Cloud.of(lab)
    interrupted = False
    try:
        scenario_fn(cloud, reporter, result, conf_extra)
    except KeyboardInterrupt:
        interrupted = True
        result.error = "interrupted"
        reporter.step("interrupted")
    except Exception as exc:  # noqa: BLE001 - reported, then the lab is removed
        result.error = f"{type(exc).__name__}: {exc}"
        reporter.step(f"error: {result.error}")
        reporter.detail(f"daemon logs: novanet-lab logs --name {lab.name} (with --keep)")
    finally:
        checked = reporter.elapsed
        passed, failed, skipped = checks.summary(result.checks)
        reporter.heading(
            f"{passed} of {len(result.checks)} observations match the seed"
            + (f", {failed} differ" if failed else "")
            + (f", {skipped} skipped" if skipped else "")
            + f" ({checked:.1f} s)"
        )
        if result.extra:
            passed, failed, _ = checks.summary(result.extra)
            reporter.out.write(
                f"{passed} of {len(result.extra)} floating IP observations pass"
                + (f", {failed} fail" if failed else "")
                + "\n"
            )
        if keep and not interrupted:
            for line in explore_hints(lab):
                reporter.out.write(line + "\n")
        else:
            started = time.monotonic()
            lab.down()
            reporter.step(f"lab {lab.name} removed ({time.monotonic() - started:.1f} s)")
        result.seconds = reporter.elapsed
        verdict = "PASS" if result.ok else "FAIL"
        reporter.out.write(f"{verdict}: demo finished in {result.seconds:.1f} s\n")
        reporter.out.flush()
    return result
