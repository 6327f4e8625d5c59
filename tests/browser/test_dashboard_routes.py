"""The dashboard's routes without a browser: page and assets need no token, carry a strict policy, and nothing
outside chalicelib/static is served; ``/api/me`` names the caller's scope."""

from __future__ import annotations

import json

import pytest
from chalice.test import Client

TOKENS = "viewer:read:read-token-abc0123456789abcdef0123456,owner:write:write-token-xyz0123456789abcdef012345"


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Client:
    monkeypatch.setenv("ATB_API_TOKENS", TOKENS)
    monkeypatch.delenv("ATB_API_TOKENS_SECRET_ARN", raising=False)
    from app import app

    return Client(app)


def test_the_page_is_served_without_a_token_under_a_policy_that_allows_nothing_inline(client: Client) -> None:
    response = client.http.get("/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    page = response.body.decode()
    assert 'src="static/app.js"' in page
    assert "<script>" not in page  # no inline script
    assert "http://" not in page.replace("http://www.w3.org", "")
    assert "https://" not in page


@pytest.mark.parametrize(("name", "content_type"), [("app.js", "text/javascript"), ("app.css", "text/css"),
                                                    ("favicon.svg", "image/svg+xml")])
def test_each_bundled_asset_is_served_as_text_with_its_type(client: Client, name: str, content_type: str) -> None:
    response = client.http.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["Content-Type"].split(";")[0] == content_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("name", ["index.html", "missing.js", "..%2Fdashboard.py", "app.py", ".hidden.js"])
def test_anything_else_under_static_is_a_json_404(client: Client, name: str) -> None:
    response = client.http.get(f"/static/{name}")
    assert response.status_code == 404
    assert json.loads(response.body)["error"]["code"] == "not_found"


def test_api_me_names_the_token_and_its_scope_and_needs_a_token(client: Client) -> None:
    read = client.http.get("/api/me", headers={"Authorization": "Bearer read-token-abc0123456789abcdef0123456"})
    assert (read.status_code, json.loads(read.body)) == (200, {"name": "viewer", "scope": "read"})
    write = client.http.get("/api/me", headers={"Authorization": "Bearer write-token-xyz0123456789abcdef012345"})
    assert json.loads(write.body) == {"name": "owner", "scope": "write"}
    assert client.http.get("/api/me").status_code == 401
    assert client.http.get("/api/me", headers={"Authorization": "Bearer nope"}).status_code == 401
