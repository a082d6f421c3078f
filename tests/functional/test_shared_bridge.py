"""Networks sharing one bridge (``network create --num_networks N``, as nova made them).

nova: manager.py _do_create_networks gave all N networks the one bridge and
linux_net.initialize_gateway_device put the DHCP server address of whichever
network it set up last first on it. novanet keeps the first network's
address first and adds the others' after it, on the real kernel.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.functional.test_bridge import flat_interface, inet_lines, novanet_in
from tests.lib.netns import Namespace

pytestmark = pytest.mark.root

SETUP_BOTH = (
    "steps = manager.setup_controller('br100', 'eth2', '10.0.0.1/24', '10.0.0.255')\n"
    "steps += manager.ensure_address('br100', '10.0.4.1/24', '10.0.4.255')\n"
    "result = [str(s) for s in steps]\n"
)


def test_every_network_of_the_bridge_has_its_address_the_first_one_first(
    netns: Namespace, tmp_path: Path
) -> None:
    flat_interface(netns, with_config=False)
    novanet_in(netns, SETUP_BOTH, tmp_path)
    expected = [
        "inet 10.0.0.1/24 brd 10.0.0.255 scope global br100",
        "inet 10.0.4.1/24 brd 10.0.4.255 scope global br100",
    ]
    assert inet_lines(netns, "br100") == expected
    # a restart changes nothing (nova reordered the addresses on every setup)
    assert novanet_in(netns, SETUP_BOTH, tmp_path) == []
    assert inet_lines(netns, "br100") == expected
