"""Turning on a real etcd's auth through its JSON gateway: the root user (etcd wants it
before `/v3/auth/enable`) and, optionally, a user whose one role may read and write
one key prefix, which is what a registry node is given in production."""

from __future__ import annotations

import base64

import httpx

from sd_etcd import prefix_range_end


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def enable_auth(
    url: str, root_password: str, *, user: str = "", password: str = "", prefix: str = ""
) -> None:
    """Add root (and `user` with read-write on `prefix`), then enable auth and check
    that an anonymous read is refused."""
    steps: list[tuple[str, dict[str, object]]] = [
        ("/v3/auth/user/add", {"name": "root", "password": root_password}),
        ("/v3/auth/role/add", {"name": "root"}),
        ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
    ]
    if user:
        role = f"{user}-role"
        permission = {
            "permType": "READWRITE",
            "key": _b64(prefix.encode()),
            "range_end": _b64(prefix_range_end(prefix.encode())),
        }
        steps += [
            ("/v3/auth/user/add", {"name": user, "password": password}),
            ("/v3/auth/role/add", {"name": role}),
            ("/v3/auth/role/grant", {"name": role, "perm": permission}),
            ("/v3/auth/user/grant", {"user": user, "role": role}),
        ]
    steps.append(("/v3/auth/enable", {}))
    for path, body in steps:
        answer = httpx.post(f"{url}{path}", json=body, timeout=5)
        assert answer.status_code == 200, (path, answer.text)
    anonymous = httpx.post(f"{url}/v3/kv/range", json={"key": "AA=="}, timeout=5)
    assert anonymous.status_code != 200  # auth is really on
