"""The first-bytes gate: a connection whose first request is a plain watch is
answered here, below the HTTP server; any other is handed on to the server."""
