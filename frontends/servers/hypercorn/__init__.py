"""Hypercorn: its configuration, the compatibility patches to its internals,
and the asyncio and trio entry points that serve the registry with it."""
