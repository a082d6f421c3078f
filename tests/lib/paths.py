"""Paths of the source tree, so tests run from any working directory."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The seed article's listings (copied from the project's brief): the ground truth
# the functional and e2e tests compare kernel state with.
SEED = ROOT / "tests" / "data" / "seed"
