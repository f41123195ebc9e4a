"""A headless Chromium for the page tests, through playwright, with what they check.

The browser is Debian's `chromium` (no browser download: `executable_path`
points at the system binary). Tests skip, saying why, when playwright or
Chromium is missing; `.ci/run` installs both, so CI runs them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser as PlaywrightBrowser
    from playwright.sync_api import BrowserContext, ConsoleMessage, Dialog, Page, Request

CHROMIUM_NAMES = ("chromium", "chromium-browser")

#: Where page tests leave their screenshots (build/ is not tracked).
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


class Browser:
    """One Chromium; `page(origin)` opens a fresh page whose requests and dialogs are recorded.

    `foreign_requests` lists every request a page made to anywhere but its
    registry; `requests` every request it made to its registry, as (method,
    path and query); `dialogs` every alert/confirm message, dismissed unless
    `accept_dialogs` is set (a confirm() the test means to answer "yes");
    `console_errors` what the page logged as errors (a Content-Security-Policy
    violation shows there).
    """

    def __init__(self, browser: PlaywrightBrowser) -> None:
        self._browser = browser
        self.foreign_requests: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.dialogs: list[str] = []
        self.console_errors: list[str] = []
        self.accept_dialogs = False
        self._context: BrowserContext | None = None

    def page(self, origin: str) -> Page:
        if self._context is not None:  # one page at a time: an old one would keep polling
            # Closed first: the old page's last events (a failed poll of a registry
            # already stopped) are delivered during the close, and must not count here.
            self._context.close()
        self.foreign_requests.clear()
        self.requests.clear()
        self.dialogs.clear()
        self.console_errors.clear()
        self.accept_dialogs = False
        context = self._context = self._browser.new_context()
        page = context.new_page()

        def on_request(request: Request) -> None:
            if not request.url.startswith(origin + "/"):
                self.foreign_requests.append(request.url)
            else:
                self.requests.append((request.method, request.url.removeprefix(origin)))

        def on_dialog(dialog: Dialog) -> None:
            self.dialogs.append(dialog.message)
            if self.accept_dialogs:
                dialog.accept()
            else:
                dialog.dismiss()

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.console_errors.append(message.text)

        page.on("request", on_request)
        page.on("console", on_console)
        page.on("dialog", on_dialog)
        return page

    def dashboard(self, origin: str, token: str) -> Page:
        """A fresh page on the registry's /ui with `token` entered, as a person signs in."""
        page = self.page(origin)
        page.goto(f"{origin}/ui")
        page.fill("#token", token)
        page.click("button[type=submit]")
        return page


@contextmanager
def open_browser() -> Iterator[Browser]:
    """Chromium, headless and sandbox-less (as root in CI), closed afterwards."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--headless", "--no-sandbox"]
        )
        try:
            yield Browser(browser)
        finally:
            browser.close()
