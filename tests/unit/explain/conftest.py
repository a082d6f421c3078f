"""The explainer tests use the network tests' controller of stateful fakes."""

from tests.unit.network.conftest import controller  # noqa: F401 - the fixture
