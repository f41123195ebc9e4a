"""What the CLI tests share besides fixtures: a command's result and the tokens."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

READ_TOKEN = "cli-read-only-token"


@dataclass(frozen=True)
class Ran:
    """What one command did: its exit code and everything it printed."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)
