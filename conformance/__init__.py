"""Black-box conformance suite for the registry's HTTP contract (docs/api.md).

Every test talks to a real server process started with
``python -m frontends serve --frontend {quart|trio} --fd N``, so the suite
proves what a client on the network sees, for both frontends alike. Nothing in
here imports the project's own code.
"""
