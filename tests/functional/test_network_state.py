"""novanet-network's files and leases on a real host: who may read them, what a dnsmasq restart keeps.

The real daemon and dnsmasq in namespaces built like the seed's controller
(tests/functional/test_network_daemon.py's Controller), RabbitMQ through the
relay, a busybox DHCP client in the ``vm`` namespace.
"""

from __future__ import annotations

import datetime
import os
import signal
import stat
import subprocess

import pytest

from novanet.db import instances
from novanet.db.models import FIXED_IPS, utcnow
from tests.functional.test_network_daemon import MAC, Controller, _rpc, started
from tests.lib.wait import poll, wait_for

pytestmark = [pytest.mark.root, pytest.mark.rabbit]

OTHER_MAC = "fa:16:3e:00:00:0b"


@pytest.fixture(scope="module")
def ctl(vhost):
    yield from started(Controller, "state", vhost)


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command as the unprivileged user dnsmasq becomes (and any local user is)."""
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", *argv],
        capture_output=True, text=True, timeout=30,
    )


def test_no_secret_is_readable_by_another_user(ctl, vhost):
    transport, api = _rpc(vhost)
    try:
        inst = instances.create_instance(
            ctl.db, display_name="secret", hostname="secret", host="compute-1", vif_type="tap",
            user_data=b"#cloud-config\npassword: hunter2\n", public_key="ssh-ed25519 AAAA key",
        )
        address = api.allocate_for_instance(instance_uuid=inst.uuid, mac=MAC)["address"]
        # dnsmasq, as nobody, still re-reads the hostsfile and answers
        assert f"lease of {address} obtained" in ctl.dhcp()
        wait_for(lambda: ctl.fixed(address).leased, "the lease")
        database = ctl.state / "novanet.sqlite"
        files = [database, database.with_name("novanet.sqlite-wal"), database.with_name("novanet.sqlite-shm")]
        for path in files:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode & 0o077 == 0, f"{path} is {mode:04o}"
            result = as_nobody("cat", str(path))
            assert result.returncode != 0 and "Permission denied" in result.stderr, path
        state_mode = stat.S_IMODE(ctl.state.stat().st_mode)
        assert state_mode & 0o004 == 0 and state_mode & 0o001, f"{ctl.state} is {state_mode:04o}"
        assert as_nobody("ls", str(ctl.state)).returncode != 0  # nobody may not list it
        hostsfile = ctl.state / "networks" / "nova-br100.conf"
        seen = as_nobody("cat", str(hostsfile))
        assert seen.returncode == 0 and MAC in seen.stdout  # dnsmasq's re-read as nobody
        api.deallocate_for_instance(instance_uuid=inst.uuid)
        wait_for(lambda: ctl.fixed(address).instance_uuid is None, "the address to be freed")
    finally:
        transport.cleanup()


def test_an_existing_world_readable_database_is_tightened(ctl):
    database = ctl.state / "novanet.sqlite"
    os.chmod(database, 0o644)  # as novanet created it before
    ctl.manage("network", "list")  # any program that opens the database
    assert stat.S_IMODE(database.stat().st_mode) == 0o640  # others' bits gone, group read kept
    assert as_nobody("cat", str(database)).returncode != 0


def _age_leases(ctl, seconds: int) -> None:
    with ctl.db.transaction() as conn:
        conn.execute(FIXED_IPS.update().where(FIXED_IPS.c.leased.is_(True))
                     .values(updated_at=utcnow() - datetime.timedelta(seconds=seconds)))


def test_leases_survive_a_dnsmasq_restart_long_after_their_add(ctl, vhost):
    """The guest renewed for two days (``old`` events, not recorded); dnsmasq restarts."""
    transport, api = _rpc(vhost)
    try:
        first = instances.create_instance(ctl.db, display_name="long", hostname="long", host="compute-1", vif_type="tap")
        second = instances.create_instance(ctl.db, display_name="later", hostname="later", host="compute-1", vif_type="tap")
        address = api.allocate_for_instance(instance_uuid=first.uuid, mac=MAC)["address"]
        other = api.allocate_for_instance(instance_uuid=second.uuid, mac=OTHER_MAC)["address"]
        assert f"lease of {address} obtained" in ctl.dhcp()
        wait_for(lambda: ctl.fixed(address).leased, "the lease")
        _age_leases(ctl, 2 * 86400)  # dhcp_lease_time is 86400 s

        old = ctl.dnsmasq_pid()
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: (p := ctl.dnsmasq_pid()) and p != old, "a new dnsmasq", 15)
        # dnsmasq runs its script one event at a time: once the second guest's `add`
        # is recorded, the new dnsmasq's `init` (and any `del` of a lease it found
        # expired) went before it.
        ctl.vm.run(["ip", "link", "set", "eth0", "down"])
        ctl.vm.run(["ip", "link", "set", "eth0", "address", OTHER_MAC, "up"])
        try:
            assert f"lease of {other} obtained" in ctl.dhcp()
            wait_for(lambda: ctl.fixed(other).leased, "the second guest's lease")
        finally:
            ctl.vm.run(["ip", "link", "set", "eth0", "down"])
            ctl.vm.run(["ip", "link", "set", "eth0", "address", MAC, "up"])
        assert ctl.fixed(address).leased, "the restarted dnsmasq dropped a lease its guest renews"
        assert poll(lambda: not ctl.fixed(address).leased, 2) is None
        for uuid in (first.uuid, second.uuid):
            api.deallocate_for_instance(instance_uuid=uuid)
    finally:
        transport.cleanup()
