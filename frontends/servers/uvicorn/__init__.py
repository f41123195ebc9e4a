"""Uvicorn: the HTTP/1.1-only protocol class and the entry point that serves
the registry's asyncio app with it."""
