"""The pages the registry serves to people, loaded once from this package's files.

`/ui` is the dashboard (`ui.html`, `dashboard.js`, `dashboard.css`: plain
files, no build step, nothing from a CDN). The core serves them with the
headers it decides (`sd_core.pages`); this module only reads the bytes, since
the core does no I/O.
"""

from __future__ import annotations

from importlib.resources import files

from sd_core import Page

_HERE = files(__name__)

#: Path served -> (file in this package, media type).
DASHBOARD_FILES = {
    "/ui": ("ui.html", "text/html; charset=utf-8"),
    "/ui/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/ui/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}


def load_pages() -> dict[str, Page]:
    """Every page, read from disk now so that serving one never touches the disk."""
    return {
        path: Page(_HERE.joinpath(name).read_bytes(), media_type)
        for path, (name, media_type) in DASHBOARD_FILES.items()
    }
