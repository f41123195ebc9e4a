"""The API reference at /docs, in a real browser: find register, try it out, see it work.

Swagger UI is served by the registry itself from the `[docs]` extra's files;
the test fails if the page loads anything from elsewhere. The token goes in
through Swagger UI's "Authorize" dialog and stays in the page's memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from conformance.client import api_for
from conformance.common import SECRET, base_env, unique_name
from conformance.server_process import ServerProcess, serving

from .browser_support import SCREENSHOTS, Browser, open_browser

UI_SECONDS = 20_000  # milliseconds, playwright's unit


@pytest.fixture(scope="module", params=["quart", "trio"])
def registry(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with serving(request.param, base_env()) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with open_browser() as opened:
        yield opened


def test_try_it_out_registers_an_instance(registry: ServerProcess, browser: Browser) -> None:
    service = unique_name("docs")
    page = browser.page(registry.url)
    page.goto(f"{registry.url}/docs")
    register = page.locator("#operations-default-post_v1_discovery_register")
    register.wait_for(timeout=UI_SECONDS)

    page.click("button.authorize")
    page.locator(".auth-container input").first.fill(SECRET)
    page.click(".auth-btn-wrapper button.authorize")
    page.click(".auth-btn-wrapper button.btn-done")

    register.locator(".opblock-summary").click()
    register.locator("button.try-out__btn").click()
    body = {
        "service_name": service,
        "instance_id": f"{service}-1",
        "host": "127.0.0.1",
        "port": 8080,
    }
    register.locator("textarea.body-param__text").fill(json.dumps(body))
    register.locator("button.execute").click()
    status = register.locator(".live-responses-table tr.response .response-col_status").first
    status.wait_for(timeout=UI_SECONDS)
    assert status.text_content().strip() == "200"

    with api_for(registry.url, SECRET) as api:
        listed = api.service(service).json()["instances"]
    assert [i["instance_id"] for i in listed] == [f"{service}-1"]
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"docs-{registry.frontend}.png"), full_page=True)
    assert browser.foreign_requests == [], "the docs loaded something from elsewhere"
    assert browser.console_errors == [], browser.console_errors
