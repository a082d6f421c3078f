"""etc/novanet.conf.sample is what oslo-config-generator makes from the code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from tests.lib.paths import ROOT


def test_sample_config_is_current(tmp_path):
    generator = shutil.which("oslo-config-generator") or os.path.join(
        os.path.dirname(sys.executable), "oslo-config-generator"
    )
    target = tmp_path / "novanet.conf.sample"
    subprocess.run(
        [
            generator,
            "--config-file",
            str(ROOT / "etc/novanet-config-generator.conf"),
            "--output-file",
            str(target),
        ],
        check=True,
    )
    assert target.read_text() == (ROOT / "etc/novanet.conf.sample").read_text(), (
        "etc/novanet.conf.sample is stale: run "
        "oslo-config-generator --config-file etc/novanet-config-generator.conf"
    )
