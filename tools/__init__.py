"""Tools for finding where a server's time and memory go: not performance scenarios
(those are in `bench/`), but they start servers and load them with `bench`'s helpers."""
