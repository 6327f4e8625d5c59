"""Bearer tokens: parsing both formats, the Secrets Manager source (cached), scopes, and attribution."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from api_helpers import body, post_json
from aws_lambda_powertools.utilities import parameters
from chalice.test import Client
from moto import mock_aws

from chalicelib.api import auth
from chalicelib.api.errors import ApiError
from chalicelib.jsonutil import loads_exact


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("ATB_API_TOKENS", raising=False)
    parameters.clear_caches()
    with mock_aws():
        yield
    parameters.clear_caches()


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_the_token_list_is_name_scope_token_separated_by_commas() -> None:
    tokens = auth.parse_tokens(" alice:write:s3cr:et:with:colons , bob:READ:r0 ,broken, eve:admin:x, :read:y ")
    assert [(t.name, t.scope) for t in tokens] == [("alice", "write"), ("bob", "read")]
    assert auth.parse_tokens("") == ()
    assert "s3cr" not in repr(tokens)


def test_write_implies_read_and_read_does_not_imply_write(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATB_API_TOKENS", "w:write:wtoken,r:read:rtoken")
    assert auth.authenticate(_bearer("wtoken"), "read") == auth.Principal("w", "write")
    assert auth.authenticate(_bearer("rtoken"), "read") == auth.Principal("r", "read")
    with pytest.raises(ApiError) as refused:
        auth.authenticate(_bearer("rtoken"), "write")
    assert refused.value.status == 403
    for headers in ({}, _bearer("wtoke"), _bearer("wtokenn"), {"authorization": "wtoken"}):
        with pytest.raises(ApiError) as missing:
            auth.authenticate(headers, "read")
        assert missing.value.status == 401


def test_without_any_configured_token_nobody_gets_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATB_API_TOKENS", "")
    with pytest.raises(ApiError) as refused:
        auth.authenticate(_bearer("anything"), "read")
    assert refused.value.status == 401


@pytest.mark.parametrize("secret", [
    "ops:write:from-the-secret,viewer:read:view-only",
    json.dumps({"tokens": [{"name": "ops", "scope": "write", "token": "from-the-secret"},
                           {"name": "viewer", "scope": "read", "token": "view-only"}]}),
])
def test_tokens_come_from_secrets_manager_in_either_format_and_are_cached(
        aws: None, monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    client = boto3.client("secretsmanager")
    arn = client.create_secret(Name="atb-api-tokens", SecretString=secret)["ARN"]
    monkeypatch.setenv("ATB_API_TOKENS_SECRET_ARN", arn)
    assert auth.authenticate(_bearer("from-the-secret"), "write").name == "ops"
    assert auth.authenticate(_bearer("view-only"), "read").name == "viewer"
    client.put_secret_value(SecretId=arn, SecretString="ops:write:rotated")
    assert auth.authenticate(_bearer("from-the-secret"), "write").name == "ops"  # cached while warm
    parameters.clear_caches()
    assert auth.authenticate(_bearer("rotated"), "write").name == "ops"


def test_an_unreadable_token_secret_is_a_503_not_an_open_door(
        aws: None, monkeypatch: pytest.MonkeyPatch, client: Client) -> None:
    monkeypatch.setenv("ATB_API_TOKENS_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:gone")
    response = client.http.get("/api/balance", headers={"Authorization": "Bearer x"})
    assert response.status_code == 503
    assert "gone" not in response.body.decode()


def test_the_ledger_records_the_token_name_and_keeps_the_typed_name_as_a_label(
        client: Client, start_session) -> None:
    start_session()
    response = client.http.post("/api/balance", headers=post_json(),
                                body=body({"amount": 10, "reason": "gift", "updated_by": "the CEO"}))
    entry = loads_exact(response.body)["entry"]
    assert (entry["updated_by"], entry["updated_by_label"]) == ("owner", "the CEO")
    history = loads_exact(client.http.get("/api/balance/history", headers=post_json()).body)["entries"]
    assert history[0]["updated_by"] == "owner"
