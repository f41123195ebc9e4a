"""Put the project root first on `sys.path`, so `bench` and `conformance` import.

The same reason as tests/frontends/conftest.py: `bench/` and `conformance/`
are not installed packages, and the editable install's import hook may map the
project's own packages as namespace packages when run from elsewhere.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
