"""Paths of the source tree, so tests run from any working directory."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The seed article's listings (copied from the project's brief): the ground truth
# the functional and e2e tests compare kernel state with.
SEED = ROOT / "tests" / "data" / "seed"


def world_readable_dir(prefix: str) -> Path:
    """A fresh directory every user can traverse (mode 0755, under /tmp).

    dnsmasq drops to ``nobody`` and re-reads its hostsfile on SIGHUP as that
    user: state kept in pytest's 0700 tmp_path would be unreadable to it.
    The caller removes it.
    """
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=f"novanet-{prefix}-", dir="/tmp"))
    path.chmod(0o755)
    return path
