"""Packaging promises: Python >= 3.11 enforced, LICENSE, driver extras, pipes, --config-dir.

tools/install-check.sh checks the same in a fresh virtualenv with a built
wheel; these are the fast versions of those checks.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest

from novanet import conf as novanet_conf
from novanet.conf import loader
from novanet.db import engine
from novanet.exception import UsageError
from tests.lib.paths import ROOT


def _setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return parser


def test_python_requires_is_where_setuptools_reads_it():
    cfg = _setup_cfg()
    assert cfg.get("options", "python_requires") == ">=3.11"
    assert not cfg.has_option("metadata", "python_requires")  # setuptools ignores it there


def test_license_file_is_the_apache_license_setup_cfg_names():
    cfg = _setup_cfg()
    assert cfg.get("metadata", "license") == "Apache-2.0"
    assert cfg.get("metadata", "license_files").strip() == "LICENSE"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_database_drivers_are_extras():
    cfg = _setup_cfg()
    required = cfg.get("options", "install_requires").lower()
    assert "pymysql" not in required and "psycopg" not in required
    assert "PyMySQL" in cfg.get("options.extras_require", "mysql")
    assert "psycopg" in cfg.get("options.extras_require", "postgresql")


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [("mysql://u@127.0.0.1/x", "pymysql", "mysql"), ("postgresql://u@127.0.0.1/x", "psycopg", "postgresql")],
)
def test_missing_driver_is_one_line_naming_the_extra(monkeypatch, url, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # what an install without the extra has
    with pytest.raises(UsageError) as err:
        engine.make_engine(url)
    message = str(err.value)
    assert "\n" not in message and f"pip install 'novanet[{extra}]'" in message


def _closed_pipe() -> int:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the program writes: `| head -0`
    return write


def _into_closed_pipe(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    write = _closed_pipe()
    try:
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
    finally:
        os.close(write)


def test_run_filter_exits_like_a_filter_killed_by_sigpipe():
    result = _into_closed_pipe(
        "import sys; from novanet.cmd.pipes import run_filter; "
        "sys.exit(run_filter(lambda: print('x' * 100000)))"
    )
    # a Unix filter killed by SIGPIPE: status 141 in the shell, not a word said
    assert (result.returncode, result.stderr) == (141, "")


def test_novanet_lab_output_into_a_closed_pipe():
    # any command that prints (status, logs, the demo's report) ends the same way
    result = _into_closed_pipe(
        "from novanet.lab import cli; import novanet.cmd.lab as m; "
        "cli.ANY['demo'] = lambda lab, args: print('observation ' * 10000) or 0; m.main()",
        "demo",
    )
    assert (result.returncode, result.stderr) == (141, "")


@pytest.mark.parametrize("module", ["novanet.cmd.network", "novanet.cmd.metadata", "novanet.cmd.compute"])
def test_daemons_help_into_a_closed_pipe_is_quiet(module):
    result = _into_closed_pipe(f"import {module} as m; m.main()", "--help")
    assert result.stderr == "" and result.returncode in (0, 141)


def test_manage_listing_into_a_closed_pipe(tmp_path):
    flags = tmp_path / "nova.conf"
    flags.write_text(f"--state_path={tmp_path}\n")
    base = [sys.executable, "-m", "novanet.cmd.manage", "--flagfile", str(flags)]
    for args in (["db", "sync"], ["network", "create", "--label", "n", "--fixed_range_v4", "10.0.0.0/22", "--bridge", "br100"]):
        subprocess.run(base + args, check=True, capture_output=True, cwd=ROOT, timeout=120)
    write = _closed_pipe()
    try:
        result = subprocess.run(
            base + ["fixed", "list"], stdout=write, stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120
        )
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (141, "")


def _ini(path: Path, state: str) -> None:
    path.write_text(f"[DEFAULT]\nstate_path = {state}\n")


def test_config_dir_files_are_read_sorted_where_the_switch_stands(tmp_path):
    # oslo.config's --config-dir: *.conf of the directory, sorted, after the
    # files given before it (later values win)
    d = tmp_path / "novanet.conf.d"
    d.mkdir()
    _ini(d / "20-b.conf", "/from-b")
    _ini(d / "10-a.conf", "/from-a")
    _ini(d / "30-c.txt", "/not-a-conf-file")
    before, after = tmp_path / "before.conf", tmp_path / "after.conf"
    _ini(before, "/from-before")
    _ini(after, "/from-after")

    def state(*sources):
        conf = novanet_conf.new_conf()
        loader.load(conf, list(sources))
        return conf.state_path

    src = loader.Source
    assert state(src("config", str(before)), src("dir", str(d))) == "/from-b"
    assert state(src("dir", str(d)), src("config", str(after))) == "/from-after"
    # nothing given: the default file, then the default directory
    conf = novanet_conf.new_conf()
    loader.load(conf, [], default_files=(str(before), str(d)))
    assert conf.state_path == "/from-b"
    with pytest.raises(loader.ConfigError, match="No such file or directory"):
        loader.load(novanet_conf.new_conf(), [src("dir", str(tmp_path / "missing"))])


def test_every_program_takes_config_dir(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    loader.add_config_arguments(parser)
    args = parser.parse_args(["--config-file", "a", "--config-dir", "d", "--flagfile", "f"])
    assert args.config_sources == [
        loader.Source("config", "a"), loader.Source("dir", "d"), loader.Source("flag", "f")
    ]
