"""The types of the fixtures `conftest.py` offers, for the test functions' signatures.

Stated once here so that every test module names a fixture's type the same way,
instead of each module declaring its own alias.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from conformance.client import Api
from conformance.fake_instances import FakeInstance
from conformance.server_process import ServerProcess

#: ``unique``: a name no other test uses, from a readable prefix.
Names = Callable[[str], str]

#: ``fake``: a started fake instance (on the host given, loopback by default).
MakeFake = Callable[..., FakeInstance]

#: ``launch``: a dedicated server for one test (see `conftest.launch`).
Launcher = Callable[..., ServerProcess]


class Clients(Protocol):
    """``clients``: an `Api` of ``server`` holding ``token`` (the read-write one by default)."""

    def __call__(self, server: ServerProcess, token: str | None = ...) -> Api: ...
