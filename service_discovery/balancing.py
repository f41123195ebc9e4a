"""Choosing one instance among many: the power of two choices, with replacement.

Picking the least-loaded instance of all makes every client stampede the same
instance until the next load report; picking at random ignores load. Drawing
two instances at random and taking the less loaded one gets most of the
benefit of the first with the spread of the second (Mitzenmacher, "The Power
of Two Choices in Randomized Load Balancing"), and it needs no coordination
between clients.

The two draws are made *with replacement*, as Envoy's least-request balancer
does. Drawing two *distinct* instances turns a pool of two into a pure
least-loaded choice (the pair is always both of them), which is exactly the
stampede this scheme exists to avoid: with loads 0.30 and 0.31 every pick went
to the first. With replacement, the most loaded of ``n`` instances still gets
``1/n²`` of the picks (a quarter of them with two replicas), so a stale load
report cannot starve or flood anyone.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .models import ServiceInstance

__all__ = [
    "power_of_two_choices",
]


def power_of_two_choices(
    instances: Sequence[ServiceInstance], rng: random.Random | None = None
) -> ServiceInstance | None:
    """Draw two instances (with replacement) and return the one with the lower load.

    Returns ``None`` for an empty sequence and the only instance of a
    one-element one. A tie keeps the first draw, so equally loaded instances
    share the traffic evenly.
    """
    if not instances:
        return None
    if len(instances) == 1:
        return instances[0]
    chooser = rng if rng is not None else random
    a = instances[chooser.randrange(len(instances))]
    b = instances[chooser.randrange(len(instances))]
    return b if b.load_percentage < a.load_percentage else a
