"""The lab benchmark's markdown section (see bench/lab_bench.py)."""

from __future__ import annotations

from bench.common import machine, median, table, verdict
from bench.lab_model import (
    C1,
    C2,
    DNSMASQ,
    GOAL_TOTAL,
    LEASED_WAIT,
    SAME_COST,
    Phase,
    Results,
    flag_lag,
    ms,
    nth,
    stats,
    timeline,
)


def report(r: Results) -> None:
    """Print the markdown section."""
    p = r.phases
    print(f"Machine: {machine()}. Lab: controller-1, {C1}, {C2} in namespaces, the real "
          f"daemons, RabbitMQ on loopback, SQLite; network 10.0.0.0/{r.prefix}; netns VIFs with "
          "busybox udhcpc as the guest. Times in ms. CLI = `novanet-manage instance create` "
          "run on controller-1 as an operator does (a new Python process each time); RPC = "
          "the same create_instance call from one open connection (what the server costs).")  # fmt: skip
    first, first_rpc = p["first-cli"], p["first-rpc"]
    total = median(first.values("total_s"))
    met = total <= GOAL_TOTAL
    ratio = median(p["last-cli"].values("create_s")) / median(
        first.values("create_s")[: len(p["last-cli"].boots)]
    )
    bursts = "; ".join(
        f"{p[f'burst-{v}'].good}/{len(p[f'burst-{v}'].boots)} in {p[f'burst-{v}'].wall:.0f} s "
        f"through {v.upper()}" for v in ("cli", "rpc")
    )  # fmt: skip
    print(f"\nGoals: create -> lease in the guest, median <= 1 s: **{verdict(met)}** ("
          f"{ms(total)} ms with the CLI, {ms(median(first_rpc.values('total_s')))} ms through "
          f"RPC). {len(p['burst-cli'].boots)} concurrent instances on 2 hosts leased with the "
          f"right addresses: **{verdict(p['burst-cli'].ok and p['burst-rpc'].ok)}** ({bursts}). "
          f"The {nth(r.had + 1)} create on a host costs the first's (ratio <= {SAME_COST}): "
          f"**{verdict(ratio <= SAME_COST)}** ({ratio:.2f}).")  # fmt: skip
    print(f"\n### One at a time: the first instances on {C1}\n")
    rows = [
        [f"create (CLI), {len(first.boots)} instances", *stats(first.values("create_s")), ""],
        ["create returned -> lease in the guest", *stats(first.values("lease_s")), ""],
        ["create (CLI) -> lease", *stats(first.values("total_s")), f"**{verdict(met)}**"],
        [f"create (RPC), {len(first_rpc.boots)} instances", *stats(first_rpc.values("create_s")), ""],
        ["create (RPC) -> lease", *stats(first_rpc.values("total_s")), ""],
    ]  # fmt: skip
    print(table(["", "median", "p90", "max", "goal: median <= 1000"], rows))
    for phase in (first, first_rpc):
        for problem in phase.problems[:5]:
            print(f"- {problem}")
    for name in ("burst-cli", "burst-rpc"):
        report_burst(p[name], r)
    report_last(r)
    print(f"\n### Timeline of the {len(first.boots)} CLI boots (daemons' INFO log stamps)\n")
    steps = timeline(r.events, first.done)
    print(table(["step", "median", "p90", "max"], [[t, *stats(v)] for t, v in steps]))
    if r.profile:
        report_profile(r)
    report_dhcp_script(r)


def report_burst(phase: Phase, r: Results) -> None:
    n, via = len(phase.boots), phase.via
    print(f"\n### Concurrent ({via}): {n} instances across {C1} and {C2}, {r.workers} workers\n")
    rows = [[f"create ({via})", *stats(phase.values("create_s"))],
            ["create returned -> lease in the guest", *stats(phase.values("lease_s"))],
            ["create -> lease", *stats(phase.values("total_s"))],
            ["lease in the guest -> database says leased (dhcp-script)",
             *stats(flag_lag(r.events, phase.done))]]  # fmt: skip
    print(table(["per instance", "median", "p90", "max"], rows))
    print(f"\nAll {n} created and leased in **{phase.wall:.1f} s** ({n / phase.wall:.1f} "
          "instances/s). Guests holding exactly the address the database gave them (create "
          "output = `fixed list` = udhcpc's lease = `ip -4 addr` in the guest), no address or "
          f"MAC twice: {phase.good}/{n}: **{verdict(phase.ok)}**.")  # fmt: skip
    for problem in phase.problems[:10]:
        print(f"- {problem}")
    flagged = n - phase.unflagged
    print(
        f"\nThe database marked {flagged}/{n} of them leased within "
        f"{phase.leased_wait:.1f} s after the last boot"
        + ("." if not phase.unflagged else f" (waited at most {LEASED_WAIT:.0f} s).")
        + " CPU per instance, ms: "
        + ", ".join(f"{part} {ms(phase.per_boot(part))}" for part in phase.cpu)
        + f" (2 cores: {2 * phase.wall / n * 1000:.0f} ms of CPU per instance available)."
    )


def report_last(r: Results) -> None:
    p, n = r.phases, r.had
    k, s = len(p["last-cli"].boots), len(p["first-cli"].boots)
    print(f"\n### Create cost: the first instances on a host vs the {nth(n + 1)}\n")
    rows = []
    for via, first, last, a0, b0 in (
        ("CLI", p["first-cli"], p["last-cli"], 1, n + 1),
        ("RPC", p["first-rpc"], p["last-rpc"], s + 1, n + k + 1),
    ):
        a = median(first.values("create_s")[:k])
        b = median(last.values("create_s"))
        goal = f"**{verdict(b / a <= SAME_COST)}**" if via == "CLI" else "(the server's share)"
        rows.append([f"create ({via})", f"{nth(a0)}-{nth(a0 + k - 1)}: {ms(a)}",
                     f"{nth(b0)}-{nth(b0 + k - 1)}: {ms(b)}", f"{b / a:.2f}", goal])  # fmt: skip
    first, last = p["first-cli"], p["last-cli"]
    a, b = median(flag_lag(r.events, first.done)), median(flag_lag(r.events, last.done))
    ratio = f"{b / a:.1f}" if a >= 0.05 else "-"
    rows.append(["(CLI) lease in the guest -> database says leased", ms(a), ms(b), ratio, ""])
    rows.append([f"(CLI) share of a core used by {DNSMASQ}", f"{first.busy:.0%}",
                 f"{last.busy:.0%}", "", ""])  # fmt: skip
    early, late = r.probes
    rows.append([f"one create, dnsmasq idle: {DNSMASQ} CPU",
                 f"{early.leases} leases: {ms(early.cpu)}", f"{late.leases} leases: {ms(late.cpu)}",
                 f"{late.cpu / early.cpu:.1f}" if early.cpu > 0 else "-", ""])  # fmt: skip
    print(table([f"median, {C1}", "first on the host", f"after it had {n}", "ratio",
                 f"goal: ratio <= {SAME_COST}"], rows))  # fmt: skip


def report_dhcp_script(r: Results) -> None:
    early, late = r.probes
    if not late.cpu > 3 * early.cpu:
        return
    per_lease = (late.cpu - early.cpu) / max(1, late.leases - early.leases)
    busy = r.phases["last-cli"].busy
    print(
        "\n### Found: the dhcp-script's work per create grows with the leases\n\n"
        f"One create with dnsmasq idle cost dnsmasq and its dhcp-script {ms(late.cpu)} ms of "
        f"CPU with {late.leases} leases against {ms(early.cpu)} ms with {early.leases} "
        f"({per_lease * 1000:.0f} ms per lease held); its address was marked leased "
        f"{late.flagged:.1f} s after the guest had it ({early.flagged:.1f} s early on). During "
        f"the last CLI creates they kept {busy:.0%} of a core busy, out of 2. Cause: every "
        "create rewrites the hostsfile and SIGHUPs dnsmasq, and on SIGHUP dnsmasq runs the "
        "--dhcp-script with `old` for every lease it holds (dnsmasq(8), --dhcp-script), one "
        "at a time; each is an exec of novanet-dhcpbridge (a /bin/sh wrapper that answers "
        "`old` without starting Python, about 1 ms), and a new lease's `add` waits behind "
        "them. What moves it: no SIGHUP per create, i.e. the --dhcp-hostsdir path, which "
        "networks take above dhcp_hostsdir_threshold hosts (256 by default)."
    )


def report_profile(r: Results) -> None:
    assert r.profile is not None
    prof = r.profile
    rest = prof.wall - prof.bare - prof.imports - prof.server
    print(f"\n### Profile: where a CLI create spends its time ({ms(prof.wall)} ms)\n")
    parts = [
        ("entering the node + bare Python start-up (`python -S -c pass` there)", prof.bare),
        ("novanet-manage's imports (sum of `python -X importtime`)", prof.imports),
        ("the server: create_instance over RPC from an open connection", prof.server),
        ("the rest: config, broker connection, reply queue, output, exit", rest),
    ]
    print(table(["part", "ms", "share"], [[t, ms(v), f"{v / prof.wall:.0%}"] for t, v in parts]))
    names = ", ".join(f"{name} {sec * 1000:.0f}" for name, sec in prof.packages[:10])
    print(f"\nImport time by package, ms (own modules, not nested): {names}. "
          "(`-X importtime` adds a little to the imports.)")  # fmt: skip
    worst = max(parts, key=lambda part: part[1])
    print(f"\n**Bottleneck**: {worst[0].split(' (')[0]}: {ms(worst[1])} of {ms(prof.wall)} ms.")
    if worst[1] != prof.server:
        lease = median(r.phases["first-cli"].values("lease_s"))
        print(
            f"The server answers in {ms(prof.server)} ms and the guest has its lease "
            f"{ms(lease)} ms after the CLI returns; the rest is "
            "novanet-manage starting a new Python process per command. What would move it: "
            "import sqlalchemy and alembic only in the commands that use the database "
            "(`instance create` does not: novanet/manage/cli.py imports every subcommand "
            "module, and novanet.manage.db pulls novanet.db.migration -> alembic), keep "
            "oslo.messaging from importing oslo.service and eventlet (oslo_messaging.notify "
            "-> listener -> server -> oslo_service; dnspython comes with eventlet's greendns), "
            "or give operators' tools a long-lived client (an API endpoint or a kept-open RPC "
            "connection): the RPC rows show create -> lease well under a second that way."
        )
