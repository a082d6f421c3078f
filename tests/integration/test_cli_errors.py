"""novanet-manage over the real RabbitMQ: one line per error, a bounded wait on a dead broker.

A real NetworkEndpoint serves topic ``network`` on the run's vhost (the
controller of fakes around a real database, as in test_rpc.py);
novanet-manage runs its own main() against the same database and vhost, as
an operator's command would.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from novanet import conf as novanet_conf
from novanet.manage import cli, rpcclient
from novanet.network.endpoint import NetworkEndpoint
from novanet.rpc import transport as rpc
from novanet.rpc.compute_api import ComputeAPI
from tests.lib import broker

pytestmark = pytest.mark.rabbit

BIN = Path(sys.executable).parent


@pytest.fixture
def served(vhost, controller):
    transport = broker.transport(vhost)
    controller.manager.init_host()
    server = rpc.get_server(transport, "network", "controller-1", [NetworkEndpoint(controller.manager)])
    server.start()
    yield controller
    server.stop()
    server.wait()
    transport.cleanup()


def manage(controller, vhost, *args: str, capsys) -> tuple[int, str, str]:
    conf = novanet_conf.new_conf()
    rpc.register_opts(conf)
    conf.set_override("transport_url", vhost.url())
    flagfile = Path(controller.conf.state_path) / "manage.conf"
    flagfile.write_text(
        f"--state_path={controller.conf.state_path}\n--instance_create_timeout=2\n--rpc_connect_timeout=5\n"
    )
    code = cli.main(["--flagfile", str(flagfile), *args], conf=conf)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(err: str) -> bool:
    return err.count("\n") == 1 and err.startswith("novanet-manage: error: ") and "Traceback" not in err


def test_refusals_and_failures_of_novanet_network_are_one_line(served, vhost, capsys, caplog):
    controller = served
    create = ["instance", "create", "--host", "compute-1", "--vif-type", "tap"]
    code, out, _ = manage(controller, vhost, *create, "--name", "a", "--mac", "fa:16:3e:00:00:01", capsys=capsys)
    assert code == 0 and "fa:16:3e:00:00:01" in out
    caplog.clear()
    with caplog.at_level(logging.INFO):
        # an unknown compute host: NotFound, exit 1
        code, _, err = manage(controller, vhost, "instance", "create", "--host", "compute-9", "--name", "b", capsys=capsys)
        assert (code, one_line(err)) == (1, True) and "compute-9" in err
        # a duplicate MAC: Conflict, exit 1
        code, _, err = manage(controller, vhost, *create, "--name", "c", "--mac", "fa:16:3e:00:00:01", capsys=capsys)
        assert (code, one_line(err)) == (1, True) and "already in use" in err
        # the compute host does not answer: ServiceUnavailable after instance_create_timeout
        transport = broker.transport(vhost)
        try:
            controller.manager.compute = ComputeAPI(transport)
            controller.conf.set_override("instance_create_timeout", 1)
            code, _, err = manage(controller, vhost, *create, "--name", "d", capsys=capsys)
        finally:
            transport.cleanup()
        assert (code, one_line(err)) == (1, True) and "did not plug the instance" in err, err
        # a failure novanet-network did not anticipate (a bug): one line naming it
        def broken(**kw):
            raise KeyError("no such thing")

        controller.manager.create_instance = broken
        code, _, err = manage(controller, vhost, *create, "--name", "e", capsys=capsys)
        assert (code, one_line(err)) == (1, True)
        assert "novanet-network failed in create_instance: KeyError" in err and "its log" in err
    # the server logged each refusal as one line and the failure's traceback once
    refused = [r for r in caplog.records if "refused:" in r.getMessage()]
    assert len(refused) == 3 and all(r.exc_info is None for r in refused)
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1 and "create_instance failed" in tracebacks[0].getMessage()


def test_double_delete_over_rpc_is_one_line(served, vhost):
    controller = served
    created = controller.manager.create_instance(display_name="x", host="compute-1", vif_type="tap")
    conf = novanet_conf.new_conf()
    conf([])
    rpc.register_opts(conf)
    conf.set_override("transport_url", vhost.url())
    with rpcclient.network_api(conf, 10) as api:
        api.delete_instance(instance_uuid=created.uuid)
        with pytest.raises(Exception) as caught:
            api.delete_instance(instance_uuid=created.uuid)
    assert type(caught.value).__name__ == "NotFound" and "_Remote" not in type(caught.value).__module__
    assert str(caught.value) == f"instance {created.uuid} does not exist"
    assert caught.value.exit_code == 1


class SilentBroker:
    """Accepts TCP connections and never says a word (a hung broker, a firewall's tarpit)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        for conn in self.held:
            conn.close()


class ProbeThenSilent(SilentBroker):
    """Relays the first connection to the real broker, then goes silent: a broker lost
    between novanet-manage's check and its call (oslo.messaging would wait for ever)."""

    def _accept(self) -> None:
        first = True
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if first:
                first = False
                upstream = socket.create_connection((broker.HOST, broker.PORT))
                for a, b in ((conn, upstream), (upstream, conn)):
                    threading.Thread(target=_pipe, args=(a, b), daemon=True).start()
            self.held.append(conn)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        dst.close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("kind", ["closed port", "silent listener"])
@pytest.mark.parametrize("command", [["instance", "create", "--name", "x", "--host", "compute-1"], ["instance", "delete", "1"]])
def test_a_dead_broker_fails_within_a_minute_in_one_line(tmp_path, kind, command):
    """The real program, as an operator runs it; 60 s is the issue's bound (not a speed test)."""
    silent = SilentBroker() if kind == "silent listener" else None
    port = silent.port if silent else _closed_port()
    state = tmp_path / "state"
    flagfile = tmp_path / "nova.conf"
    flagfile.write_text(
        f"--state_path={state}\n--transport_url=rabbit://guest:s3cr3t-pw@127.0.0.1:{port}/\n"
        "--fixed_range=10.0.0.0/24\n"
    )
    base = [str(BIN / "novanet-manage"), "--flagfile", str(flagfile)]
    subprocess.run([*base, "db", "sync"], check=True, capture_output=True, timeout=60)
    if command[1] == "delete":
        from novanet.db import instances
        from novanet.db.api import Database

        db = Database(f"sqlite:///{state}/novanet.sqlite")
        instances.create_instance(db, display_name="x", hostname="x", host="compute-1", vif_type="tap")
        db.dispose()
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [*base, *command], capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    finally:
        if silent:
            silent.close()
    elapsed = time.monotonic() - started
    print(f"{kind}, {command[1]}: failed after {elapsed:.1f} s: {proc.stderr.strip()}")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("novanet-manage: error: ")
    assert f"rabbit://guest:***@127.0.0.1:{port}/" in proc.stderr and "s3cr3t" not in proc.stderr
    assert proc.stdout == ""


def test_a_broker_lost_after_the_check_still_ends_the_call(tmp_path, vhost):
    lost = ProbeThenSilent()
    state = tmp_path / "state"
    flagfile = tmp_path / "nova.conf"
    flagfile.write_text(
        f"--state_path={state}\n--transport_url=rabbit://guest:guest@127.0.0.1:{lost.port}/{vhost.name}\n"
        "--instance_create_timeout=1\n--rpc_connect_timeout=3\n"
    )
    base = [str(BIN / "novanet-manage"), "--flagfile", str(flagfile)]
    subprocess.run([*base, "db", "sync"], check=True, capture_output=True, timeout=60)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [*base, "instance", "create", "--name", "x", "--host", "compute-1"],
            capture_output=True, text=True, timeout=60,
        )
    finally:
        lost.close()
    print(f"broker lost after the check: failed after {time.monotonic() - started:.1f} s: {proc.stderr.strip()}")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "no answer from novanet-network through RabbitMQ at rabbit://guest:***@" in proc.stderr
