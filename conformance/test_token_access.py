"""`GET /v1/discovery/token`: what a token may do, learned through a read (docs/api.md).

The dashboard asks it at sign-in to decide whether to offer write actions;
it must answer the same on every server kind (in a cluster, on every node)
and change nothing.
"""

from __future__ import annotations

import pytest

from conformance.client import Api, assert_error, make_client
from conformance.common import READ_TOKEN, SECRET
from conformance.server_process import ServerProcess

TOKEN = "/v1/discovery/token"


@pytest.mark.parametrize(
    ("authorization", "access"),
    [
        (f"Bearer {SECRET}", "read-write"),
        (f"Bearer {READ_TOKEN}", "read-only"),
        (SECRET, "read-write"),
        (READ_TOKEN, "read-only"),
    ],
    ids=["secret", "read-token", "bare-secret", "bare-read-token"],
)
def test_each_token_learns_its_access_and_nothing_changes(
    server: ServerProcess, api: Api, authorization: str, access: str
) -> None:
    before = api.snapshot()
    with make_client(server.url) as client:
        for _ in range(3):  # a cluster's nodes in turn
            response = client.get(TOKEN, headers={"Authorization": authorization})
            assert response.status_code == 200, response.text
            assert response.json() == {"access": access}
    assert api.snapshot() == before


@pytest.mark.parametrize("authorization", [None, "Bearer not-the-secret", f"Bearer {SECRET}x"])
def test_no_valid_token_is_401(server: ServerProcess, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    with make_client(server.url) as client:
        response = client.get(TOKEN, headers=headers)
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].split()[0] == "Bearer"


def test_only_get_is_served(server: ServerProcess) -> None:
    with make_client(server.url, SECRET) as client:
        response = client.post(TOKEN, json={})
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"
