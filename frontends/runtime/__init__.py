"""What every server kind needs and no event loop runs: settings, the runtime
around the core (built with each loop's `LoopParts`), the request flow both
apps run, metrics, logs, the state file, the pages and the watch hub.

Nothing here imports an event loop, an HTTP server or a framework
(tests/frontends/test_frontend_layers.py holds it to that)."""
