"""SharedGeneration: the iptables manager's tokens leave out exactly our lone commits."""

from __future__ import annotations

import pytest

from novanet.linux.iptables.canary import NftGeneration
from novanet.linux.nftables.generation import SharedGeneration


class Kernel:
    def __init__(self) -> None:
        self.gen = 100
        self.fail = False

    def token(self) -> int:
        if self.fail:
            raise OSError(5, "probe failed")
        return self.gen


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> Kernel:
    made = Kernel()
    monkeypatch.setattr(NftGeneration, "token", lambda _probe: made.token())
    return made


def test_a_lone_commit_of_ours_is_hidden(kernel: Kernel) -> None:
    gen = SharedGeneration()
    before = gen.token()
    with gen.commit() as done:
        kernel.gen += 1
    assert done.alone and gen.token() == before and gen.raw() == 101
    assert gen.genid(before) == 101  # what the kernel's generation is for that token
    kernel.gen += 1  # anybody else
    assert gen.token() == before + 1


def test_a_commit_shared_with_somebody_else_is_not_hidden(kernel: Kernel) -> None:
    gen = SharedGeneration()
    before = gen.token()
    with gen.commit() as done:
        kernel.gen += 2  # ours and another program's, in the same window
    assert not done.alone and gen.token() == before + 2


def test_a_refused_commit_hides_nothing(kernel: Kernel) -> None:
    gen = SharedGeneration()
    before = gen.token()
    with pytest.raises(RuntimeError), gen.commit():
        raise RuntimeError("refused")
    kernel.gen += 1
    assert gen.token() == before + 1


def test_a_failing_probe(kernel: Kernel) -> None:
    gen = SharedGeneration()
    kernel.fail = True
    assert gen.raw() is None
    with gen.commit() as done:
        kernel.gen += 1
    assert not done.alone
    with pytest.raises(OSError):
        gen.token()


def test_wraps_at_32_bits(kernel: Kernel) -> None:
    kernel.gen = 0xFFFFFFFF
    gen = SharedGeneration()
    before = gen.token()
    with gen.commit() as done:
        kernel.gen = 0
    assert done.alone and gen.token() == before
    assert SharedGeneration.own_commits(before, (before + 2) & 0xFFFFFFFF, 2)
