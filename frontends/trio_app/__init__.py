"""The trio loop's half of the registry: the plain ASGI app and the tasks it
runs on trio. Hypercorn's trio worker serves it
(`frontends.servers.hypercorn.trio_server`)."""

from frontends.trio_app.app import create_app

__all__ = ["create_app"]
