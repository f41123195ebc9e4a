"""The registry's log line format, `key=value` pairs (logfmt), on the floor every other one uses.

Here in `outbound/`, the lowest folder of `frontends`, so that the clients
(the store driver, the cluster member) and everything above them write one
format without importing upwards; `runtime.logs` names it for the rest.
"""

from __future__ import annotations


def _quote(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\\') or not text.isprintable():
        # unicode_escape doubles backslashes and escapes control characters;
        # quotes are escaped after it, so nothing is escaped twice.
        escaped = text.encode("unicode_escape").decode("ascii").replace('"', '\\"')
        return '"' + escaped + '"'
    return text


def logfmt(event: str, **fields: object) -> str:
    """One line: `event=...` first, then each field, quoted where it must be."""
    parts = [f"event={event}"]
    parts.extend(f"{key}={_quote(value)}" for key, value in fields.items())
    return " ".join(parts)
