"""The asyncio loop's half of the registry: the Quart app and the tasks it runs
on asyncio. A server serves it: `frontends.servers.hypercorn.asyncio_server`
or `frontends.servers.uvicorn.server` (`serve`, `--app` for an app of yours)."""

from frontends.quart_app.app import create_app, mount

__all__ = ["create_app", "mount"]
