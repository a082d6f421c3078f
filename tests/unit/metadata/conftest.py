from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from novanet.db.api import Database
from tests.unit.metadata.fixtures import migrated_sqlite


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = migrated_sqlite(tmp_path / "novanet.sqlite")
    try:
        yield database
    finally:
        database.dispose()
