"""novanet-metadata, the real program, in a controller namespace with a client as instance.

Topology (per module): namespace "ctl" holds veth v-ctl with 10.0.0.1/24 and
the metadata host 192.168.56.200/32; namespace "cli" is the instance
10.0.0.2/24 (eth0, default route via 10.0.0.1). The SQLite database holds
network 10.0.0.0/24 with instance 1 (cirros) on 10.0.0.2.

The daemon runs as in its unit: an unprivileged user (uid METADATA_UID, no
capability at all, no_new_privs), owning only the database's directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from novanet.db import services
from tests.lib import netns as netns_lib
from tests.lib.paths import ROOT, world_readable_dir
from tests.unit.metadata.fixtures import KEY, USER_DATA, add_instance, migrated_sqlite

pytestmark = pytest.mark.root

HOST = "192.168.56.200"
PORT = 8775
DNAT = (
    "-d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT "
    f"--to-destination {HOST}:{PORT}"
)
CLIENT_TIMEOUT = 2.0
METADATA_UID = 64123  # no such user: nothing on the machine belongs to it
UNPRIVILEGED = [
    "setpriv", f"--reuid={METADATA_UID}", f"--regid={METADATA_UID}", "--clear-groups",
    "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
]
# The unit's system-call filter and MemoryDenyWriteExecute (tests/lib/sandbox.py).
# Not combined with UNPRIVILEGED: this virtualenv's interpreter lives under
# /root, which only setpriv's own exec can still reach.
SANDBOXED = [
    "setpriv", "--no-new-privs", "--",
    sys.executable, "-m", "tests.lib.sandbox", "novanet-metadata.service", "--",
]


class Lab:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ctl = netns_lib.create("mdc")
        self.cli = netns_lib.create("mdi")
        netns_lib.veth_between(self.ctl, "v-ctl", self.cli, "eth0")
        self.ctl.run(["ip", "addr", "add", "10.0.0.1/24", "dev", "v-ctl"])
        self.ctl.run(["ip", "addr", "add", f"{HOST}/32", "dev", "v-ctl"])
        self.cli.run(["ip", "addr", "add", "10.0.0.2/24", "dev", "eth0"])
        self.cli.run(["ip", "addr", "add", "10.0.0.77/24", "dev", "eth0"])  # nobody's
        self.cli.run(["ip", "route", "add", "default", "via", "10.0.0.1"])
        self.db = migrated_sqlite(tmp / "novanet.sqlite")
        self.instance = add_instance(
            self.db, "cirros", mac="fa:16:3e:2c:e8:ec", public_key=KEY, user_data=USER_DATA
        )
        # SQLite in WAL mode: readers write the -shm file, and the heartbeat writes
        # rows; the unit's user gets the state directory the same way (README).
        for path in (tmp, *tmp.glob("novanet.sqlite*")):
            os.chown(path, METADATA_UID, METADATA_UID)
        assert self.instance.address == "10.0.0.2"
        self.proc: subprocess.Popen[str] | None = None

    def write_conf(self, name: str = "novanet.conf", **extra: object) -> Path:
        """A config file readable by the daemon's user."""
        options = {
            "my_ip": HOST,
            "host": "controller-1",
            "state_path": str(self.tmp),
            "report_interval": 1,
            "metadata_client_timeout": CLIENT_TIMEOUT,
            **extra,
        }
        lines = ["[DEFAULT]", *(f"{k} = {v}" for k, v in options.items())]
        lines += ["[database]", f"connection = {self.db.url}"]
        path = self.tmp / name
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o644)
        return path

    def start(
        self, conf: Path, log: str = "metadata.log", prefix: list[str] = UNPRIVILEGED
    ) -> subprocess.Popen[str]:
        logfile = open(self.tmp / log, "w")  # noqa: SIM115 - lives as long as the process
        proc = self.ctl.popen(
            [*prefix, sys.executable, "-m", "novanet.cmd.metadata", "--config-file", str(conf)],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            cwd=str(ROOT),
        )
        return proc

    def wait_serving(self, proc: subprocess.Popen[str], log: str = "metadata.log") -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if "serving metadata on" in (self.tmp / log).read_text():
                return
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"novanet-metadata did not start:\n{(self.tmp / log).read_text()}")

    def wget(self, url: str, ns: netns_lib.Namespace | None = None) -> subprocess.CompletedProcess[str]:
        return (ns or self.cli).run(["timeout", "10", "busybox", "wget", "-qO-", url], check=False)

    def probe(self, *args: str, ns: netns_lib.Namespace | None = None) -> object:
        result = (ns or self.cli).run(
            [sys.executable, "-m", "tests.unit.metadata.probe", *args], cwd=str(ROOT)
        )
        return json.loads(result.stdout)

    def probe_popen(self, *args: str) -> subprocess.Popen[str]:
        return self.cli.popen(
            [sys.executable, "-m", "tests.unit.metadata.probe", *args],
            cwd=str(ROOT),
            stdout=subprocess.PIPE,
        )

    def close(self) -> None:
        for proc in (self.proc,):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        self.db.dispose()
        self.cli.destroy()
        self.ctl.destroy()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    made = Lab(world_readable_dir("metadata"))
    try:
        made.proc = made.start(made.write_conf())
        made.wait_serving(made.proc)
        yield made
    finally:
        made.close()


URL = f"http://{HOST}:{PORT}/2009-04-04/meta-data/instance-id"


def test_instance_gets_its_ec2_id(lab: Lab) -> None:
    result = lab.wget(URL)
    assert (result.returncode, result.stdout) == (0, "i-00000001")
    assert lab.wget(f"http://{HOST}:{PORT}/latest/meta-data/local-ipv4").stdout == "10.0.0.2"
    assert lab.wget(f"http://{HOST}:{PORT}/latest/meta-data/hostname").stdout == "cirros.novalocal"
    keys = lab.wget(f"http://{HOST}:{PORT}/latest/meta-data/public-keys/0/openssh-key")
    assert keys.stdout == KEY
    assert lab.wget(f"http://{HOST}:{PORT}/latest/user-data").stdout == USER_DATA.decode()
    doc = json.loads(lab.wget(f"http://{HOST}:{PORT}/openstack/latest/meta_data.json").stdout)
    assert doc["uuid"] == lab.instance.uuid and doc["name"] == "cirros"


def test_other_sources_learn_nothing(lab: Lab) -> None:
    # another address of the client namespace: no instance's
    got = lab.probe("get", HOST, str(PORT), "/2009-04-04/meta-data/instance-id", "--bind", "10.0.0.77")
    assert got == {"status": 404, "body": "404 Not Found\n"}
    # the controller itself, on the metadata port
    result = lab.wget(URL, ns=lab.ctl)
    assert result.returncode != 0 and "404" in result.stderr
    assert "i-0" not in result.stdout
    got = lab.probe("get", HOST, str(PORT), "/openstack/latest/meta_data.json", ns=lab.ctl)
    assert got == {"status": 404, "body": "404 Not Found\n"}


def test_it_runs_unprivileged_and_touches_no_firewall(lab: Lab) -> None:
    assert lab.proc is not None
    status = Path(f"/proc/{lab.proc.pid}/status").read_text()
    # `ip netns exec` execs setpriv, which execs python: the same pid
    fields = dict(line.split(":", 1) for line in status.splitlines())
    assert fields["Uid"].split()[:2] == [str(METADATA_UID)] * 2
    assert int(fields["CapEff"], 16) == 0 and int(fields["CapBnd"], 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
    listing = lab.ctl.run(["iptables-save"]).stdout
    assert "nova-api" not in listing  # novanet-network installs those (not running here)


def test_it_works_under_the_units_syscall_filter(lab: Lab) -> None:
    conf = lab.write_conf("seccomp.conf", metadata_port=8780)
    proc = lab.start(conf, log="seccomp.log", prefix=SANDBOXED)
    try:
        lab.wait_serving(proc, log="seccomp.log")
        assert lab.wget(f"http://{HOST}:8780/latest/meta-data/instance-id").stdout == "i-00000001"
        status = Path(f"/proc/{proc.pid}/status").read_text()
        assert "Seccomp:\t2" in status  # a filter is loaded
        proc.send_signal(signal.SIGHUP)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = (lab.tmp / "seccomp.log").read_text()
    assert "Traceback" not in log and "novanet-metadata stopped" in log


def test_it_reports_its_heartbeat(lab: Lab) -> None:
    def row() -> list[tuple[str, str, int]]:
        return [
            (s.host, s.binary, s.report_count)
            for s in services.list_services(lab.db)
            if s.binary == "novanet-metadata"
        ]

    deadline = time.monotonic() + 15
    while not (row() and row()[0][2] >= 2):
        assert time.monotonic() < deadline, f"no heartbeats: {row()}"
        time.sleep(0.2)
    assert row()[0][:2] == ("controller-1", "novanet-metadata")


def test_dnat_from_169_254_169_254(lab: Lab) -> None:
    lab.ctl.run(["iptables", "-t", "nat", "-A", "PREROUTING", *DNAT.split()])
    try:
        result = lab.wget("http://169.254.169.254/2009-04-04/meta-data/instance-id")
        assert (result.returncode, result.stdout) == (0, "i-00000001")
    finally:
        lab.ctl.run(["iptables", "-t", "nat", "-D", "PREROUTING", *DNAT.split()], check=False)


def test_slow_clients_do_not_hold_the_service(lab: Lab) -> None:
    slow = lab.probe_popen("slow", HOST, str(PORT), "50", str(CLIENT_TIMEOUT + 4))
    try:
        time.sleep(0.5)
        for _ in range(3):
            started = time.monotonic()
            result = lab.wget(URL)
            assert result.stdout == "i-00000001"
            # Not held until the server cuts the slow clients (at client_timeout).
            assert time.monotonic() - started < CLIENT_TIMEOUT
            time.sleep(0.3)
        out, _ = slow.communicate(timeout=30)
    finally:
        if slow.poll() is None:
            slow.kill()
    closed = json.loads(out)
    assert len(closed) == 50
    # every slow connection was cut at client_timeout (a byte per 0.5 s never ends a request)
    assert all(t is not None and CLIENT_TIMEOUT - 0.5 < t < CLIENT_TIMEOUT + 1.5 for t in closed), closed


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("long-url", "414"),
        ("long-header", "400"),
        ("big-headers", "400"),
        ("many-headers", "431"),
        ("body", "200"),
        ("garbage", "400"),
        ("bad-version", "505"),
    ],
)
def test_oversized_and_odd_requests(lab: Lab, kind: str, status: str) -> None:
    line = lab.probe("raw", HOST, str(PORT), kind)
    assert isinstance(line, str)
    # an HTTP/0.9-looking request gets its error without a status line
    code = line.split()[1] if line.startswith("HTTP/") else line.split()[0]
    assert code == status, line
    assert lab.wget(URL).stdout == "i-00000001"


def test_wrong_methods_and_traversal_over_http(lab: Lab) -> None:
    result = lab.cli.run(
        ["timeout", "10", "busybox", "wget", "-qO-", "--post-data", "x", URL], check=False
    )
    assert "405" in result.stderr
    for path in ("/latest/../latest/meta-data/instance-id", "/latest/%2e%2e/etc/passwd",
                 "//latest/meta-data/instance-id", "/latest/meta-data/instance-id%00"):
        got = lab.probe("get", HOST, str(PORT), path)
        assert isinstance(got, dict) and got["status"] in (400, 404), (path, got)
        assert "i-0" not in str(got["body"]) and "root:" not in str(got["body"])


def test_connections_are_bounded(lab: Lab) -> None:
    conf = lab.write_conf("bounded.conf", metadata_port=8779, metadata_max_connections=3)
    proc = lab.start(conf, log="bounded.log")
    try:
        lab.wait_serving(proc, log="bounded.log")
        slow = lab.probe_popen("slow", HOST, "8779", "3", str(CLIENT_TIMEOUT + 4))
        time.sleep(0.5)
        # all three slots are held: the next client waits in the backlog until
        # the server cuts the slow ones at client_timeout
        started = time.monotonic()
        result = lab.wget(f"http://{HOST}:8779/latest/meta-data/instance-id")
        waited = time.monotonic() - started
        assert result.stdout == "i-00000001"
        # It waited for the server to cut the slow clients, not for them to give up.
        assert CLIENT_TIMEOUT - 1.0 < waited < CLIENT_TIMEOUT + 4, waited
        slow.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()


def test_sigterm_stops_it(lab: Lab) -> None:
    conf = lab.write_conf("second.conf", metadata_port=8776)
    proc = lab.start(conf, log="second.log")
    try:
        lab.wait_serving(proc, log="second.log")
        assert lab.wget(f"http://{HOST}:8776/latest/meta-data/instance-id").stdout == "i-00000001"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        listening = lab.ctl.run(["ss", "-Htln"]).stdout
        assert ":8776" not in listening and f"{HOST}:{PORT}" in listening
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "novanet-metadata stopped" in (lab.tmp / "second.log").read_text()


def test_start_errors_are_one_line(lab: Lab) -> None:
    conf = lab.write_conf("bad-listen.conf", metadata_listen="10.9.9.9", metadata_port=8777)
    proc = lab.start(conf, log="bad-listen.log")
    assert proc.wait(timeout=20) == 1
    out = (lab.tmp / "bad-listen.log").read_text()
    assert "novanet-metadata: error: cannot listen on 10.9.9.9:8777" in out
    assert "Traceback" not in out
    assert len(out.splitlines()) == 1, out  # one line per failed start
    empty = lab.tmp / "empty.conf"
    empty.write_text(
        f"[DEFAULT]\nmy_ip = {HOST}\nmetadata_port = 8778\n"
        f"[database]\nconnection = sqlite:///{lab.tmp / 'empty.sqlite'}\n"
    )
    proc = lab.start(empty, log="empty.log")
    assert proc.wait(timeout=20) == 1
    out = (lab.tmp / "empty.log").read_text()
    assert "novanet-metadata: error: cannot read instances from the database" in out
    assert "Traceback" not in out
    assert len(out.splitlines()) == 1, out
