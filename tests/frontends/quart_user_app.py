"""A Quart user's app, as `serve --app` loads it in `test_frontend_quart_user_app.py`.

`app` is the user's own app (the registry is mounted into it); `extended` is
the registry's app (`create_app`) with the same routes added. Both carry a
route, a blueprint and a `before_request` hook, the three things a Quart user
adds first.
"""

from __future__ import annotations

from quart import Blueprint, Quart, g

from frontends.quart_app import create_app
from frontends.runtime.runtime import Runtime

pages = Blueprint("pages", __name__, url_prefix="/pages")


@pages.get("/ping")
async def ping() -> dict[str, str]:
    return {"pong": "blueprint"}


def add_user_routes(app: Quart, who: str) -> Quart:
    """The user's route, blueprint and hook, on `app`."""

    @app.before_request
    async def mark() -> None:
        g.hooked = True

    @app.get("/hello")
    async def hello() -> dict[str, object]:
        return {"hello": who, "hooked": g.get("hooked", False)}

    app.register_blueprint(pages)
    return app


app = add_user_routes(Quart("user_app"), "mounted")


def extended(runtime: Runtime) -> Quart:
    """The registry's own app with the user's routes added (`serve --app ...:extended`)."""
    return add_user_routes(create_app(runtime), "extended")
