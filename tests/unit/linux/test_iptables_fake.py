"""The fake iptables fails where the kernel fails and keeps --noflush semantics."""

from __future__ import annotations

import pytest

from novanet.exception import ProcessExecutionError
from novanet.linux.fakes.iptables import FakeIptables
from novanet.linux.iptables import IptablesRestoreError


def restore(fake: FakeIptables, *lines: str, table: str = "filter") -> None:
    fake.restore(table, "\n".join([f"*{table}", *lines, "COMMIT"]) + "\n")


def test_declaring_flushes_under_noflush_and_other_chains_survive() -> None:
    fake = FakeIptables()
    restore(fake, ":a - [0:0]", ":b - [0:0]", "-A a -j ACCEPT", "-A b -j DROP")
    restore(fake, ":a - [0:0]", "-A a -j RETURN")
    assert fake.chain("a") == ["-j RETURN"]
    assert fake.chain("b") == ["-j DROP"]
    assert fake.save("filter").splitlines()[1:4] == [
        ":INPUT ACCEPT [0:0]",
        ":FORWARD ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
    ]


@pytest.mark.parametrize(
    ("lines", "bad_line"),
    [
        ([":a - [0:0]", "-A a -j nosuch"], 3),  # jump to a missing chain
        ([":a - [0:0]", "-A INPUT -j a", "-X a"], 4),  # referenced
        ([":a - [0:0]", "-A a -j ACCEPT", "-X a"], 4),  # not empty
        (["-D INPUT -j ACCEPT"], 2),  # no such rule
        (["-D INPUT 1"], 2),
        (["-N nova-compute-twenty-nine-chars"], 2),
        ([":a - [0:0]", "-N a"], 3),
        (["-A nosuch -j ACCEPT"], 2),
    ],
)
def test_kernel_errors_abort_the_whole_restore(lines: list[str], bad_line: int) -> None:
    fake = FakeIptables()
    restore(fake, ":keep - [0:0]", "-A keep -j ACCEPT")
    before = fake.listing(), fake.generation
    with pytest.raises(IptablesRestoreError) as caught:
        restore(fake, "-A keep -j DROP", *lines)
    assert caught.value.line == bad_line + 1
    assert (fake.listing(), fake.generation) == before


def test_transactions_bump_the_generation() -> None:
    fake = FakeIptables()
    start = fake.generation
    fake.restore("filter", "*filter\nCOMMIT\n")
    assert fake.generation == start
    restore(fake, ":a - [0:0]")
    fake.run("-A a -j ACCEPT")
    assert fake.generation == start + 2
    with pytest.raises(ProcessExecutionError):
        fake.run("-X a")
    assert fake.generation == start + 2
