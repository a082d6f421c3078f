"""A lab with novanet in it: the lab, its programs, instances and observer, together."""

from __future__ import annotations

import dataclasses

from novanet.lab.daemons import Novanet
from novanet.lab.instances import Instances
from novanet.lab.lab import Lab
from novanet.lab.observe import Observer


@dataclasses.dataclass(frozen=True)
class Cloud:
    lab: Lab
    novanet: Novanet
    instances: Instances
    observer: Observer

    @classmethod
    def of(cls, lab: Lab, programs: str | None = None) -> Cloud:
        novanet = Novanet(lab, programs)
        instances = Instances(novanet)
        return cls(lab, novanet, instances, Observer(novanet, instances))
