"""The two servers that drive `sd_core`: Quart on asyncio and plain ASGI on trio."""

FRONTENDS = ("quart", "trio")

__all__ = ["FRONTENDS"]
