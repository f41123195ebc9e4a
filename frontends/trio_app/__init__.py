"""The registry served as a plain ASGI app on trio (hypercorn's trio worker)."""

from .app import create_app
from .server import serve

__all__ = ["create_app", "serve"]
