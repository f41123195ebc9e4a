"""The bad-value tables of the settings tests, written once per variable.

A refused value must be reported under the variable that holds it. Each table
names a variable once with all its bad values, and `each_refused` turns it into
the `(environment, variable the error names)` cases both settings test modules
parametrize over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: One case: the environment to load, and the variable the `ConfigError` must name.
Refusal = tuple[dict[str, str], str]


def each_refused(bad_values: Mapping[str, Sequence[str]]) -> list[Refusal]:
    """Every variable alone with each of its bad values, the error naming that variable."""
    return [({name: raw}, name) for name, raws in bad_values.items() for raw in raws]
