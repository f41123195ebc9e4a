"""Choosing one instance among many: the power of two choices.

Picking the least-loaded instance of all makes every client stampede the same
instance until the next load report; picking at random ignores load. Sampling
two at random and taking the less loaded one gets most of the benefit of the
first with the spread of the second (Mitzenmacher, "The Power of Two Choices in
Randomized Load Balancing"), and it needs no coordination between clients.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .models import ServiceInstance

__all__ = ["power_of_two_choices"]


def power_of_two_choices(
    instances: Sequence[ServiceInstance], rng: random.Random | None = None
) -> ServiceInstance | None:
    """Sample two distinct instances and return the one with the lower load.

    Returns ``None`` for an empty sequence and the only instance of a
    one-element one. The pair is drawn in random order and a tie keeps the
    first of it, so equally loaded instances share the traffic evenly.
    """
    if not instances:
        return None
    if len(instances) == 1:
        return instances[0]
    chooser = rng if rng is not None else random
    first, second = chooser.sample(range(len(instances)), 2)
    a, b = instances[first], instances[second]
    return b if b.load_percentage < a.load_percentage else a
