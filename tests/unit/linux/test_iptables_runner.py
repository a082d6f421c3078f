"""The runner: backend commands, namespaces and readable restore errors."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from novanet.exception import ProcessExecutionError
from novanet.linux.iptables import IptablesRestoreError, IptablesRunner

INPUT = "*filter\n:a - [0:0]\n-A a -j ACCEPT\n-A a -j nosuch\n-A a -j DROP\nCOMMIT\n"

# stderr of iptables 1.8.9 for INPUT (measured), and for other failures.
NFT_MISSING = (
    "iptables-nft-restore v1.8.9 (nf_tables): Chain 'nosuch' does not exist\n"
    "Error occurred at line: 6\n"
    "Try `iptables-nft-restore -h' or 'iptables-nft-restore --help' for more information.\n"
)
LEGACY_MISSING = (
    "iptables-restore v1.8.9 (legacy): Couldn't load target `nosuch':No such file or directory\n"
    "\nError occurred at line: 4\n"
    "Try `iptables-restore -h' or 'iptables-restore --help' for more information.\n"
)
NFT_BUSY = (
    "iptables-nft-restore v1.8.9 (nf_tables): \n"
    "line 3: CHAIN_DEL failed (Device or resource busy): chain a\n"
)
NFT_BAD_RULE = "iptables-nft-restore: line 5 failed: Bad rule (does a matching rule exist?).\n"


class Recorder:
    """An execute() double that plays one canned result per command."""

    def __init__(self, stderr: str = "", code: int = 0, stdout: str = "") -> None:
        self.stderr, self.code, self.stdout = stderr, code, stdout
        self.argv: list[str] = []

    def __call__(self, cmd: Sequence[str], **kw: object) -> tuple[str, str]:
        self.argv = list(cmd)
        if self.code:
            raise ProcessExecutionError(self.argv, self.code, self.stdout, self.stderr)
        return self.stdout, self.stderr


@pytest.mark.parametrize(
    ("stderr", "line", "reason"),
    [
        (NFT_MISSING, 4, "Chain 'nosuch' does not exist"),
        (LEGACY_MISSING, 4, "Couldn't load target `nosuch'"),
        (NFT_BUSY, 3, "CHAIN_DEL failed (Device or resource busy): chain a"),
        (NFT_BAD_RULE, 5, "Bad rule"),
    ],
)
def test_restore_errors_name_the_offending_line(stderr: str, line: int, reason: str) -> None:
    runner = IptablesRunner("nft", execute=Recorder(stderr, 2))
    with pytest.raises(IptablesRestoreError) as caught:
        runner.restore("filter", INPUT)
    error = caught.value
    assert error.line == line
    assert error.rule == INPUT.splitlines()[line - 1]
    assert error.rule in str(error) and reason in str(error)
    assert isinstance(error, ProcessExecutionError) and error.returncode == 2


@pytest.mark.parametrize(
    ("backend", "save", "restore"),
    [
        ("nft", "iptables-nft-save", "iptables-nft-restore"),
        ("legacy", "iptables-legacy-save", "iptables-legacy-restore"),
        ("auto", "iptables-save", "iptables-restore"),
    ],
)
def test_backends_pick_their_commands(backend: str, save: str, restore: str) -> None:
    execute = Recorder()
    runner = IptablesRunner(backend, netns="ns1", execute=execute)
    runner.save("nat")
    assert execute.argv == ["nsenter", "--net=/run/netns/ns1", save, "-t", "nat"]
    runner.restore("nat", "*nat\nCOMMIT\n")
    assert execute.argv[2:] == [restore, "-w", "--noflush"]


@pytest.mark.parametrize(
    ("version", "kernel"),
    [("iptables-save v1.8.9 (nf_tables)\n", "nft"), ("iptables-save v1.8.9 (legacy)\n", "legacy")],
)
def test_auto_backend_is_asked_once(version: str, kernel: str) -> None:
    runner = IptablesRunner("auto", execute=Recorder(stdout=version))
    assert runner.kernel_backend == kernel


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="nft"):
        IptablesRunner("iptables")
