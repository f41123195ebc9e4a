"""Pages for people: the dashboard at /ui, the API docs at /docs, and their files.

They need no token (the page asks for one and sends it on its API calls),
are served with a Content-Security-Policy that allows only the registry's own
scripts, styles and API, and hold no inline script, so that nothing a
registration carries can ever run in an operator's browser. Wrong methods
still answer in the API's error shape.
"""

from __future__ import annotations

import re

import httpx
import pytest

from conformance.client import assert_error, media_type

PAGES = {
    "/ui": "text/html",
    "/ui/dashboard.js": "text/javascript",
    "/ui/dashboard.css": "text/css",
    "/docs": "text/html",
    "/docs/docs.js": "text/javascript",
    "/docs/swagger-ui-bundle.js": "text/javascript",
    "/docs/swagger-ui.css": "text/css",
}


@pytest.mark.parametrize(("path", "kind"), PAGES.items(), ids=PAGES)
def test_page_needs_no_token_and_is_locked_down(anon: httpx.Client, path: str, kind: str) -> None:
    response = anon.get(path)
    assert response.status_code == 200, response.text
    assert media_type(response) == kind
    policy = {
        directive.split()[0]: directive.split()[1:]
        for directive in response.headers["content-security-policy"].split(";")
        if directive.strip()
    }
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("page", ["/ui", "/docs"])
def test_page_loads_only_its_own_files_and_has_no_inline_script(
    anon: httpx.Client, page: str
) -> None:
    html = anon.get(page).text
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.DOTALL | re.IGNORECASE)
    assert scripts, f"{page} has no script"
    for attributes, body in scripts:
        assert body.strip() == "", "inline script"
        source = re.search(r'src="([^"]+)"', attributes)
        assert source is not None and source.group(1) in PAGES, attributes
    for url in re.findall(r'(?:href|src)="([^"]+)"', html):
        assert url in PAGES or url == "data:,", f"{page} loads {url} from elsewhere"
    assert not re.search(r"\son\w+=", html, re.IGNORECASE), "inline event handler"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
@pytest.mark.parametrize("page", ["/ui", "/docs"])
def test_pages_take_get_only(anon: httpx.Client, method: str, page: str) -> None:
    response = anon.request(method, page)
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"
