"""The testing examples in docs/sdk.md run as written."""

from __future__ import annotations

import ast
import inspect
import random
import re
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

import service_discovery
from service_discovery import ServiceDiscoveryClient, ServiceRegistrationRequest

from .fakes import FakeRegistry
from .registry_process import ROOT

DOC = (ROOT / "docs" / "sdk.md").read_text()
BLOCKS: list[str] = re.findall(r"```python\n(.*?)```", DOC, flags=re.DOTALL)


def block_starting(prefix: str) -> str:
    matches = [b for b in BLOCKS if b.startswith(prefix)]
    assert len(matches) == 1, f"expected one python block starting with {prefix!r}"
    return matches[0]


async def run_block(source: str, namespace: dict[str, Any]) -> None:
    code = compile(source, "docs/sdk.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)  # our own documentation
    if inspect.iscoroutine(result):
        await result


def base_namespace() -> dict[str, Any]:
    return {
        "anyio": anyio,
        "httpx": httpx,
        "random": random,
        **{name: getattr(service_discovery, name) for name in service_discovery.__all__},
    }


async def test_fake_clock_example() -> None:
    registry = FakeRegistry(secret="test")
    namespace = base_namespace() | {
        "transport": registry.transport(),
        "request": ServiceRegistrationRequest(service_name="s", instance_id="i", host="h", port=1),
    }
    await run_block(block_starting("class FakeClock:"), namespace)
    assert len(namespace["clock"].sleeps) == 1440
    assert registry.paths("POST").count("/v1/discovery/heartbeat") == 1439


async def test_mock_transport_example() -> None:
    namespace = base_namespace()
    await run_block(block_starting("def handler("), namespace)
    assert isinstance(namespace["client"], ServiceDiscoveryClient)


def test_every_public_name_is_documented() -> None:
    undocumented = [
        name
        for name in service_discovery.__all__
        if name != "__version__" and f"`{name}`" not in DOC and f"{name}(" not in DOC
    ]
    assert undocumented == []


@pytest.mark.parametrize(
    "method",
    [name for name, _ in inspect.getmembers(ServiceDiscoveryClient) if not name.startswith("_")],
)
def test_every_client_method_is_in_the_summary(method: str) -> None:
    summary = DOC.split("## API summary")[1]
    assert f"`{method}`" in summary
