"""Where the time of removing and adding one instance goes, nft, at one size (for iptables_bench).

Measured on the benchmark's converged namespace, medians in milliseconds:

- through the manager: the model (the jump and the chain removed), the
  kernel's part (the netlink batch deleting the chain and the jump by
  handle), our planning and bookkeeping (the rest of apply());
- adding: iptables-nft-restore appending one rule with a verdict
  (``-j ACCEPT``) and the same rule without one, wall and kernel (system)
  time: nf_tables validates the whole table when a commit adds a verdict;
- with ``others`` (the flat layout): the same deletion by other means, on
  throwaway chains appended at the end of nova-compute-local (the manager is
  not involved):
  ``iptables-nft-restore`` deleting the jump by its text (what apply() sent
  before issue 17) and by its number, and the ``nft`` program deleting it by
  handle (not measured when nft is not installed);
- reading the handles of nova-compute-local (full_sync does it once when
  its restore was too big for the kernel's report of the new rules).
"""

from __future__ import annotations

import resource
import shutil
import statistics
import subprocess
import time
from collections.abc import Hashable

from novanet.compute.dispatch import LocalJumps
from novanet.linux.iptables import IptablesManager
from novanet.linux.iptables.nftnl import NftRules
from novanet.linux.iptables.plan import HandleBatch

LOCAL = "nova-compute-local"
PROVIDER = "nova-compute-provider"


def breakdown(
    mgr: IptablesManager, jumps: LocalJumps, ns: str, repeat: int, others: bool
) -> dict[str, float]:
    from bench.iptables_bench import add, remove

    runner = mgr.runner
    kernel: list[float] = []
    original = runner.delete_by_handle

    def timed_delete(table: str, batch: HandleBatch, token: Hashable) -> Hashable:
        start = time.perf_counter()
        try:
            return original(table, batch, token)
        finally:
            kernel.append((time.perf_counter() - start) * 1000)

    runner.delete_by_handle = timed_delete  # type: ignore[method-assign]
    model, total = [], []
    ids = range(900000, 900000 + repeat)
    try:
        for i in ids:
            add(jumps, i)
            mgr.apply()
        for i in ids:
            start = time.perf_counter()
            remove(jumps, i)
            middle = time.perf_counter()
            mgr.apply()
            model.append((middle - start) * 1000)
            total.append((time.perf_counter() - start) * 1000)
    finally:
        runner.delete_by_handle = original  # type: ignore[method-assign]
    result = {
        "model": statistics.median(model),
        "kernel_delete": statistics.median(kernel) if len(kernel) == len(ids) else float("nan"),
        "manager_total": statistics.median(total),
    }
    result["planning"] = result["manager_total"] - result["model"] - result["kernel_delete"]
    result.update(_append(ns, repeat))
    if others:
        result.update(_other_ways(ns, repeat))
    return result


def _append(ns: str, repeat: int) -> dict[str, float]:
    """One rule appended by iptables-nft-restore, with and without a verdict: wall, system ms."""
    prefix = ["nsenter", f"--net=/run/netns/{ns}", "iptables-nft-restore", "-w", "--noflush"]
    found: dict[str, list[tuple[float, float]]] = {"verdict": [], "plain": []}
    for k in range(repeat):
        for way, verdict in (("verdict", " -j ACCEPT"), ("plain", "")):
            rule = f"-A {PROVIDER} -d 10.251.{k}.{len(way)}/32{verdict}"
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime
            start = time.perf_counter()
            subprocess.run(prefix, input=f"*filter\n{rule}\nCOMMIT\n", text=True, check=True)
            wall = (time.perf_counter() - start) * 1000
            system = (resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime - before) * 1000
            found[way].append((wall, system))
    delete = [f"-D {PROVIDER} 1" for _ in range(2 * repeat)]
    subprocess.run(prefix, input="\n".join(["*filter", *delete, "COMMIT", ""]), text=True, check=True)
    return {
        f"{way}_{kind}": statistics.median(sample[index] for sample in samples)
        for way, samples in found.items()
        for index, kind in enumerate(("wall", "sys"))
    }


def _other_ways(ns: str, repeat: int) -> dict[str, float]:
    prefix = ["nsenter", f"--net=/run/netns/{ns}"]
    nft = NftRules(ns)
    ways = ["by_text", "by_number", "dump"] + (["nft_program"] if shutil.which("nft") else [])
    times: dict[str, list[float]] = {way: [] for way in ways}

    def run(argv: list[str], *lines: str) -> None:
        text = "\n".join(lines) + "\n"
        subprocess.run(prefix + argv, input=text, text=True, check=True, capture_output=True)

    restore = ["iptables-nft-restore", "-w", "--noflush"]
    try:
        for k in range(repeat):
            for way in ways:
                chain = f"nova-compute-bk-{k}-{way[:4]}"
                jump = f"-d 10.250.{k}.{len(way)}/32 -j {chain}"
                run(restore, "*filter", f":{chain} - [0:0]", f"-A {chain} -j DROP",
                    f"-A {LOCAL} {jump}", "COMMIT")
                rules = nft.rules("filter", LOCAL)
                handle = next(r.handle for r in rules if r.target == chain)
                by_number = ("*filter", f":{chain} - [0:0]", f"-D {LOCAL} {len(rules)}",
                             f"-X {chain}", "COMMIT")
                start = time.perf_counter()
                if way == "dump":
                    nft.rules("filter", LOCAL)
                elif way == "by_text":
                    run(restore, "*filter", f":{chain} - [0:0]", f"-D {LOCAL} {jump}",
                        f"-X {chain}", "COMMIT")
                elif way == "by_number":
                    run(restore, *by_number)
                else:
                    run(["nft", "-f", "-"], f"flush chain ip filter {chain}",
                        f"delete rule ip filter {LOCAL} handle {handle}",
                        f"delete chain ip filter {chain}")
                times[way].append((time.perf_counter() - start) * 1000)
                if way == "dump":
                    run(restore, *by_number)
    finally:
        nft.close()
    return {way: statistics.median(values) for way, values in times.items()}


def print_breakdown(res: dict[str, float], flat: dict[str, float] | None, size: int) -> None:
    both = [res] + ([flat] if flat else [])
    print()
    print(f"Where the time of removing one instance goes, nft, N = {size:,} (medians, ms):")
    print()
    print("| step | buckets (default) |" + (" flat (all jumps in nova-compute-local) |" if flat else ""))
    print("|---|---|" + ("---|" if flat else ""))
    for key, label in (
        ("manager_total", "through the manager, in all"),
        ("model", "... model: the jump and the chain removed"),
        ("kernel_delete", "... nf_tables: one batch deleting the chain and its jump by handle"),
        ("planning", "... planning and bookkeeping (the rest)"),
    ):
        print(f"| {label} | " + " | ".join(f"{r[key]:.2f}" for r in both) + " |")
    others = flat if flat and "by_text" in flat else res if "by_text" in res else None
    if others:
        for key, label in (
            ("by_text", "iptables-nft-restore, jump deleted by its text (what apply() sent before issue 17)"),
            ("by_number", "iptables-nft-restore, jump deleted by its number"),
            ("nft_program", "the nft program, jump deleted by handle (it loads all chains first)"),
            ("dump", "reading the handles of nova-compute-local (full_sync does it once)"),
        ):
            if key in others:
                cells = ["", f"{others[key]:.1f}"] if flat else [f"{others[key]:.1f}"]
                print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    print("iptables-nft-restore, given `-D` by text or by number alike, first loads and parses "
          "every rule of the chain; the kernel's own share grows with the chain too: nf_tables "
          "rebuilds the rule blob of every chain a commit changes and walks the chain to find "
          "the rule a handle names. Bucket chains hold at most 64 jumps.")
    print()
    print(f"Adding, N = {size:,}: iptables-nft-restore appending one rule to an empty chain "
          "(medians, ms, wall / in the kernel):")
    print()
    print("| rule | wall | kernel (system time) |")
    print("|---|---|---|")
    print(f"| `-d 10.251.0.7/32 -j ACCEPT` | {res['verdict_wall']:.1f} | {res['verdict_sys']:.1f} |")
    print(f"| `-d 10.251.0.5/32` (no verdict) | {res['plain_wall']:.1f} | {res['plain_sys']:.1f} |")
    print()
    print("A commit adding a rule with a verdict (any -j, ACCEPT included) makes nf_tables "
          "validate the table: it walks every chain reachable from a built-in chain "
          "(nft_table_validate), O(all rules of the table), whatever chain the rule went to. "
          "Every instance added brings such rules, so adding costs O(instances) in the kernel "
          "whatever novanet sends; buckets do not change it.")
