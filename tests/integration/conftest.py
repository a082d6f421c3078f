from tests.unit.network.conftest import controller  # noqa: F401 - shared fixture
