"""Pages for people (the dashboard, the API docs): bytes the frontend loads, headers decided here.

The core reads no files, so a frontend hands it each page's bytes when it
builds `HttpApi`. The headers are decided here, once for every frontend:
the pages need no token (they ask for one and send it on their API calls),
and their Content-Security-Policy lets them load and run only what the
registry itself serves, so a registered name or metadata value can never
bring in a script, and nothing is fetched from a CDN (air-gapped networks).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "Page",
]


#: Only the registry's own scripts, styles and API; images may also be data: URIs
#: (the API docs draw their icons that way). No inline script, no frames, no forms.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


class Page(NamedTuple):
    """One static file served at a fixed path."""

    body: bytes
    content_type: str


def page_headers(page: Page) -> tuple[tuple[str, str], ...]:
    """The headers every page is served with."""
    return (
        ("content-type", page.content_type),
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        # Revalidated on every load: an upgraded registry never runs an old script.
        ("cache-control", "no-cache"),
    )
