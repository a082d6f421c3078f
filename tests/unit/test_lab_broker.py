"""The lab's vhost commands survive a rabbitmqctl that cannot reach the node once."""

from __future__ import annotations

import pytest

from novanet import exception
from novanet.lab import broker

UNREACHABLE = (
    "Error: unable to perform an operation on node 'rabbit@host'. Please see diagnostics information\n"
    "DIAGNOSTICS\n * Erlang cookie hash: X6mLk866/H4s0yK/+ZgqAA==\n"
)


def failing(times: int, stderr: str = UNREACHABLE, code: int = 69):
    calls: list[list[str]] = []

    def execute(argv, **_kw):
        calls.append(list(argv))
        if len(calls) <= times:
            raise exception.ProcessExecutionError(
                cmd=argv, exit_code=code, stdout="", stderr=stderr
            )
        return "", ""

    return execute, calls


def test_a_node_unreachable_once_is_retried(monkeypatch):
    execute, calls = failing(1)
    monkeypatch.setattr(broker.processutils, "execute", execute)
    monkeypatch.setattr(broker, "RETRY_DELAY", 0.0)
    broker.create_vhost("nl-x")
    assert [c[2] for c in calls] == ["add_vhost", "add_vhost", "set_permissions"]


def test_a_node_that_stays_unreachable_is_one_line_naming_the_error(monkeypatch):
    execute, calls = failing(10)
    monkeypatch.setattr(broker.processutils, "execute", execute)
    monkeypatch.setattr(broker, "RETRY_DELAY", 0.0)
    with pytest.raises(exception.NovanetError) as err:
        broker.create_vhost("nl-x")
    assert len(calls) == broker.ATTEMPTS
    assert str(err.value) == (
        "cannot create the RabbitMQ vhost nl-x: Error: unable to perform an operation on node "
        "'rabbit@host'. Please see diagnostics information"
    )


def test_a_missing_vhost_is_not_retried(monkeypatch):
    execute, calls = failing(10, stderr="Error: vhost nl-x does not exist\n", code=65)
    monkeypatch.setattr(broker.processutils, "execute", execute)
    assert broker.delete_vhost("nl-x") is False
    assert len(calls) == 1
