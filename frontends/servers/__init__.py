"""Everything that knows an HTTP server's internals, one folder per server
(`hypercorn/`, `uvicorn/`) plus `direct/`, the first-bytes gate that answers
watch streams before the server sees them. Each server's `install()` applies
its compatibility patches; the loop folders reach a server only through its
`install()` and serve function."""
