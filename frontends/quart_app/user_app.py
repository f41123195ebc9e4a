"""`serve --app MODULE:NAME`: a Quart app of the user's, served with the registry in it.

NAME is either a `quart.Quart` app, which gets the registry mounted into it
(`mount`), or a factory called with the `Runtime` that returns a Quart app
with the registry already in it (`create_app(runtime)` plus the user's routes,
or `mount(their_app, runtime)`). Why a name to import rather than an app
object built beforehand: the runtime comes from the settings and the server
kind at `serve` time, and the server entry needs it before serving (the
watch streams below the server, draining on SIGTERM).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from quart import Quart

from frontends.quart_app.app import EXTENSION, create_app, mount
from frontends.runtime.runtime import Runtime
from sd_core import ConfigError

#: What `serve` is given: a Quart app, or a factory of one from the runtime.
AppSource = Quart | Callable[[Runtime], Quart]


class AppError(ConfigError):
    """`--app` names nothing servable; the message says what to fix, in one line."""

    def __init__(self, message: str) -> None:
        super().__init__("--app", message)


def load_app(spec: str) -> AppSource:
    """The object `MODULE:NAME` names (imported now, so a typo fails before the server starts)."""
    module_name, colon, name = spec.partition(":")
    if not colon or not module_name or not name:
        raise AppError(f"{spec}: expected MODULE:NAME (a Quart app or a factory)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise AppError(f"{spec}: cannot import {module_name} ({error})") from error
    found: object = getattr(module, name, None)
    if isinstance(found, Quart):
        return found
    if not callable(found):
        raise AppError(f"{spec}: {name} is not a Quart app nor a factory of one")
    return cast("Callable[[Runtime], Quart]", found)  # its result is checked in build_app


def build_app(source: AppSource, runtime: Runtime) -> Quart:
    """The Quart app to serve for `source`, with the registry mounted in it."""
    if isinstance(source, Quart):
        return mount(source, runtime)
    app: object = source(runtime)
    if not isinstance(app, Quart) or app.extensions.get(EXTENSION) is not runtime:
        raise AppError(
            f"factory {getattr(source, '__name__', source)!r} must return a Quart app "
            "with this registry in it (create_app(runtime), or mount(app, runtime))"
        )
    return app


__all__ = ["AppError", "AppSource", "build_app", "create_app", "load_app"]
