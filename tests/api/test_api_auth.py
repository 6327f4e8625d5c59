"""Bearer tokens: parsing both formats, the Secrets Manager source (cached), scopes, and attribution."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from api_helpers import TOKENS, body, post_json
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


W = "w" * 32
R = "r" * 32
FROM_SECRET = "from-the-secret-0123456789abcdef0123"
VIEW_ONLY = "view-only-0123456789abcdef0123456789"
ROTATED = "rotated-0123456789abcdef0123456789ab"


def test_the_token_list_is_name_scope_token_separated_by_commas() -> None:
    tokens = auth.parse_tokens(f" alice:write:s3cr:et:with:colons{W} , bob:READ:{R} ")
    assert [(t.name, t.scope) for t in tokens] == [("alice", "write"), ("bob", "read")]
    assert auth.parse_tokens("") == ()
    assert "s3cr" not in repr(tokens)


def test_write_implies_read_and_read_does_not_imply_write(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATB_API_TOKENS", f"w:write:{W},r:read:{R}")
    assert auth.authenticate(_bearer(W), "read") == auth.Principal("w", "write")
    assert auth.authenticate(_bearer(R), "read") == auth.Principal("r", "read")
    with pytest.raises(ApiError) as refused:
        auth.authenticate(_bearer(R), "write")
    assert refused.value.status == 403
    for headers in ({}, _bearer(W[:-1]), _bearer(W + "w"), {"authorization": W}):
        with pytest.raises(ApiError) as missing:
            auth.authenticate(headers, "read")
        assert missing.value.status == 401


SECRET = "hunter2-SECRET-value-0123456789abcdef"
#: (what is wrong, ATB_API_TOKENS): each is refused as a whole, with one line that names no field.
BAD_TOKEN_LISTS = [
    ("fields in the wrong order", f"owner:{SECRET}:write"),
    ("token first", f"{SECRET}:write:owner"),
    ("two fields", f"owner:{SECRET}"),
    ("one field", SECRET),
    ("unknown scope", f"owner:admin:{SECRET}"),
    ("empty name", f":write:{SECRET}"),
    ("name with a space", f"the owner:write:{SECRET}"),
    ("a 1-character token", "owner:write:x"),
    ("a 31-character token", "owner:write:" + "s" * 31),
    ("a token with a space", f"owner:write:{SECRET[:20]} {SECRET[20:]}"),
    ("a malformed entry beside good ones", f"owner:write:{W},{SECRET},viewer:read:{R}"),
    ("the same token twice", f"owner:write:{SECRET},backup:write:{SECRET}"),
    ("one token under two scopes", f"owner:write:{SECRET},viewer:read:{SECRET}"),
    ("one name under two scopes", f"owner:write:{W},owner:read:{R}"),
    ("three tokens for one name", f"owner:write:{W},owner:write:{R},owner:write:{SECRET}"),
    ("JSON with the fields swapped", json.dumps({"tokens": [{"name": "owner", "scope": SECRET, "token": "write"}]})),
    ("JSON not a list", json.dumps({"tokens": SECRET})),
    ("broken JSON", '{"tokens": [' + SECRET),
]


@pytest.mark.parametrize("tokens", [b[1] for b in BAD_TOKEN_LISTS], ids=[b[0] for b in BAD_TOKEN_LISTS])
def test_a_malformed_or_weak_token_list_is_refused_with_one_line_that_echoes_no_field(
        monkeypatch: pytest.MonkeyPatch, client: Client, caplog: pytest.LogCaptureFixture, tokens: str) -> None:
    with pytest.raises(auth.TokenConfigurationError) as refused:
        auth.parse_tokens(tokens)
    message = str(refused.value)
    assert "\n" not in message
    for field in ("hunter2", "SECRET", "owner", "viewer", "backup", "admin", "write:", W, R, "the owner"):
        assert field not in message, (field, message)
    monkeypatch.setenv("ATB_API_TOKENS", tokens)
    with caplog.at_level("DEBUG"):
        response = client.http.get("/api/balance", headers={"Authorization": f"Bearer {SECRET}"})
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert "hunter2" not in response.body.decode() + caplog.text
    assert "SECRET" not in response.body.decode() + caplog.text


def test_rotation_two_tokens_for_one_name_both_work_during_the_overlap_then_only_the_new_one(
        monkeypatch: pytest.MonkeyPatch, client: Client, start_session) -> None:
    old, new = "old-owner-token-0123456789abcdef0123", "new-owner-token-0123456789abcdef0123"
    start_session()
    monkeypatch.setenv("ATB_API_TOKENS", f"owner:write:{old}")
    assert client.http.get("/api/me", headers={"Authorization": f"Bearer {old}"}).status_code == 200
    monkeypatch.setenv("ATB_API_TOKENS", f"owner:write:{old},owner:write:{new}")  # the overlap
    for token in (old, new):
        response = client.http.post("/api/balance", headers={"Authorization": f"Bearer {token}",
                                                             "Content-Type": "application/json"},
                                    body=body({"amount": 1, "reason": "rotation"}))
        assert response.status_code == 201
        assert loads_exact(response.body)["entry"]["updated_by"] == "owner"
    monkeypatch.setenv("ATB_API_TOKENS", f"owner:write:{new}")  # the old one is dropped
    assert client.http.get("/api/me", headers={"Authorization": f"Bearer {old}"}).status_code == 401
    assert client.http.get("/api/me", headers={"Authorization": f"Bearer {new}"}).status_code == 200


def test_an_idempotency_key_is_scoped_to_the_token_that_sent_it(
        monkeypatch: pytest.MonkeyPatch, client: Client, start_session) -> None:
    second = "second-writer-token-0123456789abcdef"
    monkeypatch.setenv("ATB_API_TOKENS", f"{TOKENS},bot:write:{second}")
    start_session("1000")
    key = {"Idempotency-Key": "shared-key-1"}
    mine = client.http.post("/api/balance", headers=post_json(**key), body=body({"amount": 5, "reason": "mine"}))
    theirs = client.http.post("/api/balance", headers=post_json(second, **key),
                              body=body({"amount": 5, "reason": "mine"}))
    assert mine.status_code == theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs.headers  # not the owner's entry replayed
    assert loads_exact(theirs.body)["entry"]["updated_by"] == "bot"
    assert loads_exact(theirs.body)["current_balance"] == 1010
    again = client.http.post("/api/balance", headers=post_json(second, **key),
                             body=body({"amount": 5, "reason": "mine"}))
    assert again.headers["Idempotent-Replayed"] == "true" and loads_exact(again.body)["current_balance"] == 1010


def test_a_key_too_long_to_fit_the_ledger_reference_with_the_token_name_is_refused(
        client: Client, start_session) -> None:
    start_session()
    response = client.http.post("/api/balance", headers=post_json(**{"Idempotency-Key": "k" * 88}),
                                body=body({"amount": 5, "reason": "x"}))
    assert response.status_code == 400
    assert client.http.post("/api/balance", headers=post_json(**{"Idempotency-Key": "k" * 87}),
                            body=body({"amount": 5, "reason": "x"})).status_code == 201


def test_without_any_configured_token_nobody_gets_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATB_API_TOKENS", "")
    with pytest.raises(ApiError) as refused:
        auth.authenticate(_bearer("anything"), "read")
    assert refused.value.status == 401


@pytest.mark.parametrize("secret", [
    f"ops:write:{FROM_SECRET},viewer:read:{VIEW_ONLY}",
    json.dumps({"tokens": [{"name": "ops", "scope": "write", "token": FROM_SECRET},
                           {"name": "viewer", "scope": "read", "token": VIEW_ONLY}]}),
])
def test_tokens_come_from_secrets_manager_in_either_format_and_are_cached(
        aws: None, monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    client = boto3.client("secretsmanager")
    arn = client.create_secret(Name="atb-api-tokens", SecretString=secret)["ARN"]
    monkeypatch.setenv("ATB_API_TOKENS_SECRET_ARN", arn)
    assert auth.authenticate(_bearer(FROM_SECRET), "write").name == "ops"
    assert auth.authenticate(_bearer(VIEW_ONLY), "read").name == "viewer"
    client.put_secret_value(SecretId=arn, SecretString=f"ops:write:{ROTATED}")
    assert auth.authenticate(_bearer(FROM_SECRET), "write").name == "ops"  # cached while warm
    parameters.clear_caches()
    assert auth.authenticate(_bearer(ROTATED), "write").name == "ops"


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
