"""The pages the registry serves to people, loaded once from this package's files.

`/ui` is the dashboard (`ui.html`, `dashboard.js`, `dashboard.css`: plain
files, no build step, nothing from a CDN). `/docs` is the interactive API
reference: our own `docs.html` and `docs.js` around Swagger UI's files, which
come from the `swagger-ui-py` package (the `[docs]` extra) when it is
installed. We take only its static files and serve them through the shared
HTTP mapping, so both frontends serve byte-identical pages; its framework
handlers are not used. (`swagger-ui-bundle` ships Swagger UI 4.15, which
cannot render an OpenAPI 3.1 document such as ours; swagger-ui-py ships 5.x.)

The core serves every page with the headers it decides (`sd_core.pages`);
this module only reads the bytes, since the core does no I/O.
"""

from __future__ import annotations

import importlib.util
from importlib.resources import files
from pathlib import Path

from sd_core import Page

_HERE = files(__name__)

#: Path served -> (file in this package, media type).
DASHBOARD_FILES = {
    "/ui": ("ui.html", "text/html; charset=utf-8"),
    "/ui/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/ui/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}


#: Our files of the API docs page.
DOCS_FILES = {
    "/docs": ("docs.html", "text/html; charset=utf-8"),
    "/docs/docs.js": ("docs.js", "text/javascript; charset=utf-8"),
}

#: Swagger UI's files, from the swagger-ui-py package's `static` folder.
SWAGGER_FILES = {
    "/docs/swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "/docs/swagger-ui.css": ("swagger-ui.css", "text/css; charset=utf-8"),
}


def swagger_ui_dir() -> Path | None:
    """Where swagger-ui-py keeps Swagger UI's files, without importing the package.

    (Its `__init__` pulls in jinja2 and yaml for framework handlers we do not use.)
    """
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    return static if (static / "swagger-ui-bundle.js").is_file() else None


def load_pages() -> dict[str, Page]:
    """Every page, read from disk now so that serving one never touches the disk.

    `/docs` is served only when Swagger UI's files are installed (the
    `[docs]` extra, which `[server]` includes); without them it is a 404.
    """
    pages = {
        path: Page(_HERE.joinpath(name).read_bytes(), media_type)
        for path, (name, media_type) in DASHBOARD_FILES.items()
    }
    swagger = swagger_ui_dir()
    if swagger is not None:
        for path, (name, media_type) in DOCS_FILES.items():
            pages[path] = Page(_HERE.joinpath(name).read_bytes(), media_type)
        for path, (name, media_type) in SWAGGER_FILES.items():
            pages[path] = Page((swagger / name).read_bytes(), media_type)
    return pages
