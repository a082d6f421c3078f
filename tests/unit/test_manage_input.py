"""novanet-manage against hostile or oversized input: ambiguous names, control characters,
huge networks, binary user data."""

from __future__ import annotations

import io
import json
import resource
import time

import pytest

from novanet.db import instances
from novanet.db.api import Database
from novanet.manage import instance as instance_cmd
from novanet.manage.progress import Progress
from tests.unit.test_manage import env, run, snapshot, synced  # noqa: F401 - shared fixtures


@pytest.fixture
def db(synced):  # noqa: F811 - the fixture of test_manage
    assert run(synced, "network", "create", "--label", "n", "--fixed_range_v4", "10.0.0.0/24")[0] == 0
    made = Database(f"sqlite:///{synced[0]}/state/novanet.sqlite")
    yield made
    made.dispose()


def _instance(db, name: str):
    return instances.create_instance(db, display_name=name, hostname="h", host="c1", vif_type="tap")


def test_show_refuses_a_reference_that_names_two_instances(synced, db, capsys):  # noqa: F811
    first = _instance(db, "web")
    second = _instance(db, "one")
    named_two = _instance(db, str(second.id))  # an instance named "2"
    code, _ = run(synced, "instance", "show", str(second.id))
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "ambiguous" in err and second.uuid in err and named_two.uuid in err
    assert f"instance {second.id} (one" in err and f"instance {named_two.id} ({second.id}" in err
    # the instance name of one and the display name of another
    _instance(db, f"instance-{first.id:08x}")
    code, _ = run(synced, "instance", "delete", f"instance-{first.id:08x}")
    assert code == 1 and "ambiguous" in capsys.readouterr().err
    # the uuid is never ambiguous
    code, out = run(synced, "instance", "show", second.uuid, "--format", "json")
    assert code == 0 and json.loads(out)[0]["display_name"] == "one"


def test_control_characters_are_escaped_in_tables_and_exact_in_json(synced, db):  # noqa: F811
    name = "evil\nname\twith\x1b[31mcolour\\"
    _instance(db, name)
    code, out = run(synced, "instance", "list")
    header, row = out.splitlines()  # one line per instance, whatever the name holds
    assert "evil\\nname\\twith\\x1b[31mcolour\\\\" in row
    assert len(row.split()) == len(header.split())
    code, out = run(synced, "instance", "show", name)
    assert code == 0 and "\x1b" not in out and len(out.splitlines()) == 14
    code, out = run(synced, "instance", "list", "--format", "json")
    assert json.loads(out)[0]["display_name"] == name


@pytest.mark.parametrize("cidr", ["10.0.0.0/8", "0.0.0.0/0", "10.64.0.0/15"])
def test_oversized_network_refused_at_once(synced, capsys, cidr):  # noqa: F811
    before = snapshot(synced)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, _ = run(synced, "network", "create", "--label", "huge", "--fixed_range_v4", cidr, "--bridge", "br9")
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "more than max_network_size (65,536)" in err and cidr in err
    assert snapshot(synced) == before
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 50_000  # KiB: nothing built


def test_many_small_networks_count_against_the_limit(synced, capsys):  # noqa: F811
    args = ["--fixed_range_v4", "10.0.0.0/8", "--num_networks", "100000", "--network_size", "64"]
    code, _ = run(synced, "network", "create", "--label", "many", *args)
    assert code == 2 and "100000 networks of 64 addresses are 6,400,000" in capsys.readouterr().err


def test_a_slash_16_is_created_with_every_row(synced, capsys):  # noqa: F811
    code, _ = run(synced, "network", "create", "--label", "big", "--fixed_range_v4", "10.0.0.0/16")
    assert code == 0
    rows = snapshot(synced)["fixed_ips"]
    assert len(rows) == 65536
    assert rows[0][1] == "10.0.0.0" and rows[-1][1] == "10.0.255.255"


def test_progress_is_quiet_for_a_second_then_reports():
    now = [0.0]
    out = io.StringIO()
    with Progress("network create 10.0.0.0/12", out, clock=lambda: now[0]) as progress:
        for done in range(0, 1_048_576 + 1, 65536):
            progress.update(done, 1_048_576)
            now[0] += 0.3
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("network create 10.0.0.0/12: 262,144 of 1,048,576 addresses written (25%")
    assert 4 <= len(lines) <= 7 and lines[-1].endswith("written in 5.1 s")
    quick = io.StringIO()
    with Progress("network create 10.0.0.0/24", quick, clock=time.monotonic) as progress:
        progress.update(256, 256)
    assert quick.getvalue() == ""


def test_user_data_file_is_read_as_bytes(tmp_path):
    blob = tmp_path / "user-data.gz"
    blob.write_bytes(b"\x1f\x8b\x08\x00\xff\xfe binary")
    assert instance_cmd._read_file(str(blob), "--user-data", 65536) == b"\x1f\x8b\x08\x00\xff\xfe binary"
