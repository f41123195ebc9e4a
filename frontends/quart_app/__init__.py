"""The registry served by Quart on asyncio (hypercorn's asyncio worker)."""

from .app import create_app
from .server import serve

__all__ = ["create_app", "serve"]
