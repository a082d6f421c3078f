"""Where the time of removing one instance goes, nft, at one size (used by iptables_bench).

Measured on the benchmark's converged namespace, medians in milliseconds:

- through the manager: the model (remove_chain), the kernel's part (the
  netlink batch deleting the chain and the jump by handle), our planning
  and bookkeeping (the rest of apply());
- the same deletion by other means, on throwaway chains appended at the end
  of nova-compute-local (the manager is not involved):
  ``iptables-nft-restore`` deleting the jump by its text (what apply() sent
  before issue 17) and by its number, and the ``nft`` program deleting it by
  handle (not measured when nft is not installed);
- reading the handles of nova-compute-local (full_sync does it once when
  its restore was too big for the kernel's report of the new rules).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from collections.abc import Hashable

from novanet.linux.iptables import IptablesManager
from novanet.linux.iptables.nftnl import NftRules
from novanet.linux.iptables.plan import HandleBatch

LOCAL = "nova-compute-local"


def breakdown(mgr: IptablesManager, ns: str, repeat: int) -> dict[str, float]:
    from bench.iptables_bench import add

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
            add(mgr, i)
            mgr.apply()
        for i in ids:
            start = time.perf_counter()
            mgr.ipv4["filter"].remove_chain(f"inst-{i}")
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
    result.update(_other_ways(ns, repeat))
    return result


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


def print_breakdown(res: dict[str, float], size: int) -> None:
    print()
    print(f"Where the time of removing one instance goes, nft, N = {size:,} (medians, ms):")
    print()
    print("| step | ms |")
    print("|---|---|")
    print(f"| through the manager, in all | {res['manager_total']:.2f} |")
    print(f"| ... model: remove_chain | {res['model']:.2f} |")
    print(f"| ... nf_tables: one batch deleting the chain and its jump by handle | {res['kernel_delete']:.2f} |")
    print(f"| ... planning and bookkeeping (the rest) | {res['planning']:.2f} |")
    print(f"| iptables-nft-restore, jump deleted by its text (what apply() sent before) | {res['by_text']:.1f} |")
    print(f"| iptables-nft-restore, jump deleted by its number | {res['by_number']:.1f} |")
    if "nft_program" in res:
        print(f"| the nft program, jump deleted by handle (it loads all chains first) | {res['nft_program']:.1f} |")
    print(f"| reading the handles of nova-compute-local (once, in full_sync) | {res['dump']:.1f} |")
    print()
    print("iptables-nft-restore, given `-D` by text or by number alike, first loads and parses "
          "every rule of nova-compute-local; the kernel's own share grows with the chain too, "
          "because nf_tables rebuilds the rule blob of every chain a commit changes.")
