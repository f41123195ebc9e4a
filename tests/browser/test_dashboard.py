"""The dashboard at /ui, in a real browser (Debian's Chromium driven by playwright).

A registry with fast probes serves the page; the test registers instances
behind a fake health endpoint, opens the page, enters a token and checks what
a person would: the rows appear, a failing probe turns a row unhealthy without
a reload, a hostile metadata value shows as text and runs nothing, write
actions appear only for the write token, and no request leaves the registry.
Each run saves a screenshot under build/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from conformance.client import api_for
from conformance.common import PROBE_ENV, READ_TOKEN, SECRET, base_env, unique_name
from conformance.fake_instances import FakeInstance
from conformance.server_process import ServerProcess, serving

from .browser_support import SCREENSHOTS, Browser, open_browser

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

HOSTILE = "<img src=x onerror=alert(1)>"

#: How long the page may take to show a change the registry already made.
UI_SECONDS = 15_000  # milliseconds, playwright's unit


@pytest.fixture(scope="module", params=["quart", "trio"])
def registry(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with serving(request.param, base_env(**PROBE_ENV)) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with open_browser() as opened:
        yield opened


@pytest.fixture
def fleet(registry: ServerProcess) -> Iterator[tuple[str, FakeInstance]]:
    """One service of three instances: two behind /toggle, one with hostile metadata."""
    service = unique_name("ui")
    with FakeInstance() as peer, api_for(registry.url, SECRET) as api:
        for n, metadata in ((1, {"version": "1.0.0"}), (2, {"note": HOSTILE})):
            api.register_ok(
                {
                    "service_name": service,
                    "instance_id": f"{service}-{n}",
                    "host": "127.0.0.1",
                    "port": peer.port,
                    "health_endpoint": "/toggle",
                    "metadata": metadata,
                }
            )
        yield service, peer


def _first_row_healthy(
    registry: ServerProcess, browser: Browser, service: str
) -> tuple[Page, Locator]:
    """Signed in with the read-only token: the page, and the fleet's first row once healthy."""
    page = browser.dashboard(registry.url, READ_TOKEN)
    row = page.locator(f"tr[data-instance='{service}-1']")
    row.locator(".status.healthy").wait_for(timeout=UI_SECONDS)
    return page, row


def test_rows_appear_and_turn_unhealthy_without_a_reload(
    registry: ServerProcess, browser: Browser, fleet: tuple[str, FakeInstance]
) -> None:
    service, peer = fleet
    page, row = _first_row_healthy(registry, browser, service)
    page.evaluate("window.__sameDocument = true")

    peer.set_toggle(False)
    row.locator(".status.unhealthy").wait_for(timeout=UI_SECONDS)
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"

    hostile = page.locator(f"tr[data-instance='{service}-2'] .meta")
    assert hostile.text_content() == f"note={HOSTILE}"
    assert page.locator("img").count() == 0
    assert browser.dialogs == [], "a metadata value ran script"
    assert page.locator("button.action").count() == 0, "write actions shown to a read token"

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / f"dashboard-{registry.frontend}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    assert browser.foreign_requests == [], "the page loaded something from elsewhere"
    # Nothing failed to load and nothing was refused (a CSP refusal shows here).
    assert browser.console_errors == [], browser.console_errors


def _confirmed_action(
    registry: ServerProcess, browser: Browser, service: str, action: str
) -> Locator:
    """Signed in with the write token, click `action` on the first instance's row and answer
    its confirm() with yes; the row, to watch what the action did."""
    page = browser.dashboard(registry.url, SECRET)
    row = page.locator(f"tr[data-instance='{service}-1']")
    row.wait_for(timeout=UI_SECONDS)
    browser.accept_dialogs = True
    row.locator("button.action", has_text=action).click()
    return row


def test_write_token_can_unregister_after_confirming(
    registry: ServerProcess, browser: Browser, fleet: tuple[str, FakeInstance]
) -> None:
    service, _ = fleet
    row = _confirmed_action(registry, browser, service, "unregister")
    row.wait_for(state="detached", timeout=UI_SECONDS)
    assert any("Unregister" in message for message in browser.dialogs)
    with api_for(registry.url, SECRET) as api:
        listed = api.service(service).json()["instances"]
    assert [i["instance_id"] for i in listed] == [f"{service}-2"]


def test_refused_token_asks_again(registry: ServerProcess, browser: Browser) -> None:
    page = browser.dashboard(registry.url, "not-a-token")
    page.locator("#login-error").filter(has_text="refused").wait_for(timeout=UI_SECONDS)
    assert page.evaluate("sessionStorage.length") == 0


def test_maintenance_from_the_page_after_confirming(
    registry: ServerProcess, browser: Browser, fleet: tuple[str, FakeInstance]
) -> None:
    service, _ = fleet
    row = _confirmed_action(registry, browser, service, "maintenance")
    row.locator("button.action", has_text="end maintenance").wait_for(timeout=UI_SECONDS)
    with api_for(registry.url, SECRET) as api:
        shown = api.service(service).json()["instances"][0]
        assert shown["maintenance"]["reason"] == "dashboard"
        healthy = api.healthy(service).json()["healthy_instances"]
    assert f"{service}-1" not in [i["instance_id"] for i in healthy]
    row.locator("button.action", has_text="end maintenance").click()
    row.locator("button.action", has_text="end maintenance").wait_for(
        state="detached", timeout=UI_SECONDS
    )


def test_a_thousand_instances_stay_usable(registry: ServerProcess, browser: Browser) -> None:
    """1,000 instances over 20 services: every count is right and the filter finds one."""
    prefix = unique_name("big")
    with httpx.Client(
        base_url=registry.url, headers={"Authorization": f"Bearer {SECRET}"}, timeout=30
    ) as client:
        for n in range(1000):
            body = {
                "service_name": f"{prefix}-{n % 20:02d}",
                "instance_id": f"i-{n:04d}",
                "host": "127.0.0.1",
                "port": 9,
                "metadata": {"rack": f"r{n % 7}"},
            }
            assert client.post("/v1/discovery/register", json=body).status_code == 200
    try:
        page = browser.dashboard(registry.url, READ_TOKEN)
        page.locator("#summary").filter(has_text="1000 instances").wait_for(timeout=UI_SECONDS)
        assert page.locator(f"details.service[data-service^='{prefix}-']").count() == 20
        page.fill("#filter", "i-0427")
        page.locator("tr[data-instance='i-0427']").wait_for(timeout=UI_SECONDS)
        assert page.locator("tr[data-instance]").count() == 1
    finally:
        with api_for(registry.url, SECRET) as api:
            for n in range(1000):
                api.unregister(f"{prefix}-{n % 20:02d}", f"i-{n:04d}")


def test_a_drained_instance_shows_maintenance_with_its_reason_and_is_not_counted_healthy(
    registry: ServerProcess, browser: Browser, fleet: tuple[str, FakeInstance]
) -> None:
    service, _ = fleet
    page, row = _first_row_healthy(registry, browser, service)
    block = page.locator(f"details.service[data-service='{service}']")
    block.locator("[data-count=healthy]").filter(has_text="2 healthy").wait_for(timeout=UI_SECONDS)

    with api_for(registry.url, SECRET) as api:
        drained = api.http.put(
            f"/v1/discovery/maintenance/{service}/{service}-1", json={"reason": "deploy"}
        )
        assert drained.status_code == 200, drained.text
    row.locator(".status.maintenance").wait_for(timeout=UI_SECONDS)
    assert row.locator(".status.healthy").count() == 0, "a drained instance is shown healthy"
    assert "deploy" in (row.text_content() or "")
    assert block.locator("[data-count=healthy]").text_content() == "1 healthy"
    assert block.locator("[data-count=maintenance]").text_content() == "1 maintenance"
    assert "1 in maintenance" in (page.locator("#summary").text_content() or "")
    assert "2 healthy" not in (page.locator("#summary").text_content() or "")


def test_the_filter_matches_a_metadata_chip_as_it_reads(
    registry: ServerProcess, browser: Browser
) -> None:
    service = unique_name("chips")
    with api_for(registry.url, SECRET) as api:
        for n, zone in ((1, "us"), (2, "eu")):
            api.register_ok(
                {
                    "service_name": service,
                    "instance_id": f"{service}-{n}",
                    "host": "127.0.0.1",
                    "port": 9,
                    "metadata": {"zone": zone},
                }
            )
        page = browser.dashboard(registry.url, READ_TOKEN)
        us = page.locator(f"tr[data-instance='{service}-1']")
        us.wait_for(timeout=UI_SECONDS)
        assert us.locator(".meta").text_content() == "zone=us"
        page.fill("#filter", "zone=us")
        us.wait_for(timeout=UI_SECONDS)
        assert page.locator("tr[data-instance]").count() == 1
        page.fill("#filter", f"{service} 127.0.0.1:9 zone=eu")  # every word must match
        page.locator(f"tr[data-instance='{service}-2']").wait_for(timeout=UI_SECONDS)
        assert page.locator("tr[data-instance]").count() == 1


def test_tags_show_as_chips_and_the_filter_matches_them(
    registry: ServerProcess, browser: Browser
) -> None:
    """Tags are chips of their own, a hostile tag stays text, and a tag typed in the
    filter box finds the instances that carry it (with other words: all must match)."""
    service = unique_name("tags")
    with api_for(registry.url, SECRET) as api:
        for n, tags in ((1, ["traefik.enable=true", "primary"]), (2, [HOSTILE]), (3, [])):
            api.register_ok(
                {
                    "service_name": service,
                    "instance_id": f"{service}-{n}",
                    "host": "127.0.0.1",
                    "port": 9,
                    "tags": tags,
                }
            )
        page = browser.dashboard(registry.url, READ_TOKEN)
        tagged = page.locator(f"tr[data-instance='{service}-1']")
        tagged.wait_for(timeout=UI_SECONDS)
        assert tagged.locator(".tag").all_text_contents() == ["traefik.enable=true", "primary"]
        hostile = page.locator(f"tr[data-instance='{service}-2'] .tag")
        assert hostile.all_text_contents() == [HOSTILE]
        assert page.locator("img").count() == 0
        assert page.locator(f"tr[data-instance='{service}-3'] .tag").count() == 0
        page.fill("#filter", "primary")
        page.locator(f"tr[data-instance='{service}-2']").wait_for(
            state="detached", timeout=UI_SECONDS
        )
        assert page.locator("tr[data-instance]").count() == 1
        assert tagged.is_visible()
        page.fill("#filter", f"{service} traefik.enable=true")
        tagged.wait_for(timeout=UI_SECONDS)
        assert page.locator("tr[data-instance]").count() == 1
        assert browser.dialogs == [], "a tag ran script"
        assert browser.console_errors == [], browser.console_errors
        for n in (1, 2, 3):
            api.unregister(service, f"{service}-{n}")


def test_signing_in_sends_no_write_and_counts_no_refused_write(
    registry: ServerProcess, browser: Browser
) -> None:
    """The page learns what its token may do from a read; an instance whose name the old
    check used survives any sign-in, and no read-only sign-in counts as a refused write."""
    with api_for(registry.url, SECRET) as api:
        api.register_ok(
            {
                "service_name": "ui-capability-check",
                "instance_id": "none",
                "host": "127.0.0.1",
                "port": 9,
            }
        )
        try:
            refused_before = _read_only_write_failures(registry)
            for token, actions in ((READ_TOKEN, False), (SECRET, True)):
                page = browser.dashboard(registry.url, token)
                row = page.locator("tr[data-instance='none']")
                row.wait_for(timeout=UI_SECONDS)
                if actions:
                    row.locator("button.action", has_text="unregister").wait_for(timeout=UI_SECONDS)
                assert (page.locator("button.action").count() > 0) is actions
                writes = [(m, p) for m, p in browser.requests if m != "GET"]
                assert writes == [], f"signing in sent writes: {writes}"
                assert ("GET", "/v1/discovery/token") in browser.requests
            assert api.instance("ui-capability-check", "none") is not None
            assert _read_only_write_failures(registry) == refused_before
        finally:
            api.unregister("ui-capability-check", "none")


def _read_only_write_failures(registry: ServerProcess) -> float:
    """`sd_auth_failures_total{reason="read_only_write"}` of the registry, 0 before any."""
    metrics = httpx.get(f"{registry.url}/metrics", timeout=10).text
    for line in metrics.splitlines():
        if line.startswith('sd_auth_failures_total{reason="read_only_write"}'):
            return float(line.split()[-1])
    return 0.0
