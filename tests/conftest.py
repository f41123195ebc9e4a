"""Put the project root first on `sys.path`, once for every folder of tests.

`conformance/` and `bench/` are not installed packages, and the editable
install's import hook may have been generated before `frontends/` and
`service_discovery/` had an `__init__.py`, so outside the project directory it
maps them as namespace packages (`frontends.FRONTENDS` missing, Quart's
`find_package("service_discovery")` failing on the hook's placeholder path).
With the root first, the project's own regular packages win, and any folder of
tests imports `conformance`, `bench` and `tests.*` when run on its own. pytest
loads this file before any conftest or test module below it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


# Hypothesis fails an example that takes longer than its deadline (200 ms by default),
# and a run whose inputs come slowly: timed assertions, which a loaded machine trips on
# answers that are right. Speed belongs in bench/; the property tests check answers.
settings.register_profile("registry", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("registry")
