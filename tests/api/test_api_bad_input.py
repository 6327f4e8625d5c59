"""Bad input changes nothing: malformed or hostile ``POST /api/balance`` requests each get a 4xx JSON error.

A hypothesis suite sends at least 500 generated requests per database; a table of named cases pins the status
code and error code of each kind of mistake (the ones a person makes by hand, scenario 4).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from functools import partial
from typing import Any
from urllib.parse import quote as url_quote

import pytest
from api_helpers import READ_TOKEN, WRITE_TOKEN, auth, ledger_rows, post_json
from chalice.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from chalicelib.api.schemas import MAX_BODY_BYTES
from chalicelib.jsonutil import loads_exact

VALID = {"amount": 5, "reason": "ok"}
quote = partial(url_quote, safe="")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, default=str).encode("utf-8", "surrogatepass")


def _assert_refused(response: Any) -> dict:
    assert 400 <= response.status_code < 500, (response.status_code, response.body)
    assert response.headers["Content-Type"] == "application/json"
    error = loads_exact(response.body)["error"]
    assert set(error) == {"code", "message", "details"} and error["code"] and error["message"]
    assert isinstance(error["details"], list)
    return error


# --- named cases -----------------------------------------------------------------------------------------------

CASES: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("negative balance", b'{"balance": -5, "reason": "x"}', {}, 422, "validation_failed"),
    ("NaN literal", b'{"balance": NaN, "reason": "x"}', {}, 400, "invalid_json"),
    ("Infinity literal", b'{"amount": Infinity, "reason": "x"}', {}, 400, "invalid_json"),
    ("NaN string", b'{"balance": "NaN", "reason": "x"}', {}, 422, "validation_failed"),
    ("-Infinity string", b'{"amount": "-Infinity", "reason": "x"}', {}, 422, "validation_failed"),
    ("sNaN string", b'{"amount": "sNaN", "reason": "x"}', {}, 422, "validation_failed"),
    ("text amount", b'{"balance": "abc", "reason": "x"}', {}, 422, "validation_failed"),
    ("no reason", b'{"balance": 5}', {}, 422, "validation_failed"),
    ("empty reason", b'{"balance": 5, "reason": ""}', {}, 422, "validation_failed"),
    ("blank reason", b'{"balance": 5, "reason": "   "}', {}, 422, "validation_failed"),
    ("reason too long", _dumps({"balance": 5, "reason": "x" * 201}), {}, 422, "validation_failed"),
    ("reason not text", b'{"balance": 5, "reason": 42}', {}, 422, "validation_failed"),
    ("NUL in reason", b'{"balance": 5, "reason": "a\\u0000b"}', {}, 422, "validation_failed"),
    ("lone surrogate", b'{"balance": 5, "reason": "a\\ud800b"}', {}, 422, "validation_failed"),
    ("nine decimals", b'{"balance": 5.123456789, "reason": "x"}', {}, 422, "validation_failed"),
    ("too large", b'{"balance": 1e13, "reason": "x"}', {}, 422, "validation_failed"),
    ("huge exponent", b'{"balance": 1e999999, "reason": "x"}', {}, 422, "validation_failed"),
    ("5000 digits", b'{"balance": ' + b"9" * 5000 + b', "reason": "x"}', {}, 422, "validation_failed"),
    ("amount zero", b'{"amount": 0, "reason": "x"}', {}, 422, "validation_failed"),
    ("amount zero text", b'{"amount": "0.00", "reason": "x"}', {}, 422, "validation_failed"),
    ("both", b'{"balance": 5, "amount": 5, "reason": "x"}', {}, 422, "validation_failed"),
    ("neither", b'{"reason": "x"}', {}, 422, "validation_failed"),
    ("unknown field", b'{"balance": 5, "reason": "x", "admin": true}', {}, 422, "validation_failed"),
    ("boolean amount", b'{"amount": true, "reason": "x"}', {}, 422, "validation_failed"),
    ("nested object", b'{"amount": {"$gt": 0}, "reason": "x"}', {}, 422, "validation_failed"),
    ("array body", b'[{"amount": 5, "reason": "x"}]', {}, 422, "validation_failed"),
    ("label not text", b'{"amount": 5, "reason": "x", "updated_by": ["root"]}', {}, 422, "validation_failed"),
    ("label too long", _dumps({"amount": 5, "reason": "x", "updated_by": "y" * 101}), {}, 422, "validation_failed"),
    ("duplicate key", b'{"amount": 5, "amount": 7, "reason": "x"}', {}, 400, "invalid_json"),
    ("invalid JSON", b'{"amount": 5, "reason": "x"', {}, 400, "invalid_json"),
    ("empty body", b"", {}, 400, "invalid_json"),
    ("not UTF-8", b'{"amount": 5, "reason": "\xff"}', {}, 400, "invalid_json"),
    ("deep nesting", b"[" * 5000 + b"]" * 5000, {}, 400, "invalid_json"),
    ("too large body", _dumps({**VALID, "reason": "x", "pad": "p" * MAX_BODY_BYTES}), {}, 413, "payload_too_large"),
    ("form content type", b"amount=5&reason=x", {"Content-Type": "application/x-www-form-urlencoded"}, 415,
     "unsupported_media_type"),
    ("text content type", _dumps(VALID), {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    ("no content type", _dumps(VALID), {"Content-Type": ""}, 415, "unsupported_media_type"),
    ("latin-1 charset", _dumps(VALID), {"Content-Type": "application/json; charset=latin-1"}, 415,
     "unsupported_media_type"),
    ("read token", _dumps(VALID), {"Authorization": f"Bearer {READ_TOKEN}"}, 403, "forbidden"),
    ("no token", _dumps(VALID), {"Authorization": ""}, 401, "unauthorized"),
    ("bad idempotency key", _dumps(VALID), {"Idempotency-Key": "k" * 101}, 400, "invalid_idempotency_key"),
    ("bad session id", _dumps(VALID), {"X-Query": "session_id=abc"}, 400, "invalid_parameter"),
]


@pytest.mark.parametrize(("raw", "headers", "status", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_kind_of_bad_request_gets_its_status_and_changes_nothing(
        client: Client, start_session, engine: Engine, raw: bytes, headers: dict[str, str], status: int,
        code: str) -> None:
    start_session("1000")
    before = ledger_rows(engine)
    path = "/api/balance"
    headers = dict(headers)
    if "X-Query" in headers:
        path += "?" + headers.pop("X-Query")
    response = client.http.post(path, headers={**post_json(WRITE_TOKEN), **headers}, body=raw)
    error = _assert_refused(response)
    assert (response.status_code, error["code"]) == (status, code), error
    assert ledger_rows(engine) == before


@pytest.mark.parametrize(("body", "field"), [
    (b'{"balance": "abc", "reason": "x"}', "balance"),
    (b'{"balance": -5, "reason": "x"}', "balance"),
    (b'{"amount": 0, "reason": "x"}', "amount"),
    (b'{"amount": 5}', "reason"),
])
def test_validation_errors_name_the_field(client: Client, start_session, body: bytes, field: str) -> None:
    start_session()
    response = client.http.post("/api/balance", headers=post_json(), body=body)
    (detail,) = _assert_refused(response)["details"]
    assert detail["field"] == field and "abc" not in json.dumps(detail)


# --- generated hostile requests --------------------------------------------------------------------------------

junk_text = st.text(st.characters(codec="utf-8"), max_size=40)
#: Visible text around a control character, so stripping whitespace cannot remove it.
word = st.text("abcXYZ€", min_size=1, max_size=5)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                         junk_text)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(junk_text, inner, max_size=4)), max_leaves=12)

bad_amount_text = st.one_of(
    st.sampled_from(["NaN", "nan", "-NaN", "sNaN", "Infinity", "-Infinity", "inf", "1e13", "-1e400", "1e999999",
                     "0x10", "1,000", "", " ", "12abc", "1.123456789", "1_000", "١٢٣"]),
    junk_text.filter(lambda s: not re.fullmatch(r"-?[0-9]+(\.[0-9]{1,8})?", s)),
)
bad_amount_literal = st.one_of(  # raw JSON text spliced into the body
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999999", "-0.000000001", "1.000000001", "9" * 400,
                     "1e13", "-1e13", "true", "false", "null", "[]", "{}", "[5]", '{"value": 5}', "00", "01", "+1",
                     ".5", "5.", "--1", "1e", "0x1F", '"1e5"', '" 5"', '"\u0661"']),
    st.decimals(min_value=-10**9, max_value=10**9, places=9).filter(
        lambda d: d != d.quantize(Decimal("1e-8"))).map(str),
    st.integers(min_value=10**12 + 1).map(str),
)


def _splice(field: str, literal: str, reason: Any = "r") -> bytes:
    return b'{"%s": %s, "reason": %s}' % (field.encode(), literal.encode(), json.dumps(reason).encode())


@st.composite
def hostile_requests(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    headers = {"Content-Type": "application/json"}
    kind = draw(st.integers(min_value=0, max_value=13))
    if kind == 0:  # random bytes that are not JSON
        raw = draw(st.binary(max_size=200).filter(lambda b: not _parses(b)))
    elif kind == 1:  # arbitrary JSON that is not a change request (never an object with a valid shape)
        value = draw(json_values.filter(lambda v: not (isinstance(v, dict) and "reason" in v)))
        raw = _dumps(value)
    elif kind == 2:  # a bad number as raw JSON (for amount, zero too)
        field = draw(st.sampled_from(["balance", "amount"]))
        literal = draw(st.one_of(bad_amount_literal, st.sampled_from(["0", "-0", "0.0"]) if field == "amount"
                                 else bad_amount_literal))
        raw = _splice(field, literal)
    elif kind == 3:  # a bad number as a string
        raw = _dumps({draw(st.sampled_from(["balance", "amount"])): draw(bad_amount_text), "reason": "r"})
    elif kind == 4:  # negative balance
        value = draw(st.decimals(max_value=Decimal("-0.00000001"), min_value=Decimal(-10**12), places=8))
        raw = _splice("balance", str(value))
    elif kind == 5:  # reason missing, empty, too long, wrong type, or with control characters
        reason = draw(st.one_of(
            st.just(""), st.text(" \t\n\r", min_size=1, max_size=5), st.text(min_size=201, max_size=400),
            st.integers(), st.booleans(), st.lists(junk_text, max_size=2), st.dictionaries(junk_text, junk_text),
            st.tuples(word, st.characters(codec="utf-8", categories=["Cc"]), word).map("".join),
        ))
        raw = _dumps({"amount": 5, "reason": reason}) if draw(st.booleans()) else _dumps({"amount": 5})
    elif kind == 6:  # unknown fields beside a valid change
        extra = draw(junk_text.filter(lambda k: k not in ("balance", "amount", "reason", "updated_by")))
        raw = _dumps({**VALID, extra: draw(json_values)})
    elif kind == 7:  # both or neither of balance and amount
        raw = _dumps({"balance": 5, "amount": 5, "reason": "r"}) if draw(st.booleans()) else _dumps({"reason": "r"})
    elif kind == 8:  # a zero amount in any spelling
        raw = _splice("amount", draw(st.sampled_from(["0", "-0", "0.0", "0e5", "0.00000000", '"0"', '"-0.00"'])))
    elif kind == 9:  # wrong content type with a valid body
        headers["Content-Type"] = draw(st.one_of(
            st.sampled_from(["text/plain", "application/xml", "multipart/form-data", "application/jsonp",
                             "application/x-www-form-urlencoded", "*/*", "", "application/json; charset=utf-16"]),
            junk_text.filter(lambda t: t.split(";")[0].strip().lower() != "application/json"),
        ))
        raw = _dumps(VALID)
    elif kind == 10:  # unicode junk in the label
        label = draw(st.one_of(st.text(min_size=101, max_size=150), st.just(""), st.integers(),
                               st.tuples(word, st.characters(categories=["Cc", "Co"]), word).map("".join)))
        raw = _dumps({**VALID, "updated_by": label})
    elif kind == 11:  # bad or missing credentials
        headers["Authorization"] = draw(st.one_of(
            st.just(""), st.just(f"Bearer {READ_TOKEN}"), junk_text.map(lambda t: f"Bearer {t}"),
            st.just(f"bearer {WRITE_TOKEN}x"), st.just(f"Token {WRITE_TOKEN}")))
        raw = _dumps(VALID)
    elif kind == 12:  # a bad idempotency key
        headers["Idempotency-Key"] = draw(st.one_of(
            st.text(min_size=101, max_size=120, alphabet="abc"),
            st.text(st.characters(codec="ascii", categories=["Cc", "Zs"]), min_size=1, max_size=5)))
        raw = _dumps(VALID)
    else:  # an oversized body
        raw = _dumps({**VALID, "padding": "x" * (MAX_BODY_BYTES + draw(st.integers(0, 1000)))})
    return raw, headers


def _parses(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except Exception:
        return False
    return True


def test_hostile_requests_get_a_4xx_json_error_and_leave_the_ledger_unchanged(
        client: Client, start_session, engine: Engine) -> None:
    start_session("1000")
    before = ledger_rows(engine)
    sent: list[int] = []

    @settings(max_examples=550, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.filter_too_much, HealthCheck.large_base_example])
    @given(hostile_requests())
    def send(request: tuple[bytes, dict[str, str]]) -> None:
        raw, headers = request
        auth_headers = {"Authorization": f"Bearer {WRITE_TOKEN}"}
        response = client.http.post("/api/balance", headers={**auth_headers, **headers}, body=raw)
        _assert_refused(response)
        sent.append(response.status_code)
        assert ledger_rows(engine) == before

    send()
    assert len(sent) >= 500
    assert {400, 401, 403, 413, 415, 422} <= set(sent)


# --- a hand-made table of hostile requests, every route, both databases ----------------------------------------

#: Numbers no column can hold, at any magnitude or precision, as JSON numbers and as text.
HUGE_OR_TINY = ["1e1000000", "-1e1000000", "1e-99999999999999999999", "1e99999999999999999999",
                "10000000000000000000000000.000000001", "100000000000000000000000000000.000000001",
                "1e-1000000", "0.0000000001", "9" * 40, "1" + "0" * 13, "-" + "9" * 29 + ".999999999",
                "1E+999999999999999999", "123456789012345678901234567890", "1.5e-9", "4.9e-324"]
ID_VALUES = ["", "2147483648", "4294967296", "9223372036854775808", "99999999999999999999999", "0", "-1",
             "1e3", " 1", "1 ", "0x10", "abc", "1.0", "+1", "１"]
PAGE_VALUES = {"before": ["", "0", "-5", "x", "99999999999999999999999", "9223372036854775808", "1e2"],
               "limit": ["", "0", "501", "2147483648", "-1", "1.5", "ten"]}
HOSTILE_CHARS = ["\u202e", "\u202d", "\u2066", "\u2067", "\u2069", "\u200b", "\u200f", "\u2060", "\ufeff",
                 "\u0000", "\u001b", "\u0085", "\u007f", "\ue000", "\u2028", "\u2029", "\u061c", "\u00ad",
                 "\ufff9", "\U000e0001", "\ud800"]
BAD_KEYS = ["", " ", "k" * 101, "k" * 200, "caf\u00e9", "a b", "a\tb", "\u202ekey"]
BAD_CONTENT_TYPES = ["application/json; charset=utf-16", "application/json; charset=UTF-32", "text/json",
                     "application/json-patch+json", "application/problem+json", "application/octet-stream"]
GET_ROUTES = ["/api/balance", "/api/balance/history", "/api/positions", "/api/trades"]


def _hostile_table() -> list[tuple[str, str, str, bytes, dict[str, str]]]:
    """(name, method, path, body, extra headers): every combination below, at least 300 of them."""
    cases: list[tuple[str, str, str, bytes, dict[str, str]]] = []
    for number in HUGE_OR_TINY:
        for field in ("balance", "amount"):
            cases.append((f"{field} {number} as number", "POST", "/api/balance",
                          b'{"%s": %s, "reason": "r"}' % (field.encode(), number.encode()), {}))
            cases.append((f"{field} {number} as text", "POST", "/api/balance",
                          _dumps({field: number, "reason": "r"}), {}))
    for value in ID_VALUES:
        for path in [*GET_ROUTES, "/api/balance (POST)"]:
            method = "POST" if "POST" in path else "GET"
            route = path.split(" ")[0]
            cases.append((f"{method} {route} session_id={value!r}", method, f"{route}?session_id={quote(value)}",
                          _dumps(VALID) if method == "POST" else b"", {}))
    for param, values in PAGE_VALUES.items():
        for value in values:
            for route in ("/api/balance/history", "/api/trades"):
                cases.append((f"{route} {param}={value!r}", "GET", f"{route}?{param}={quote(value)}", b"", {}))
    cases += [("/api/trades before=2147483648", "GET", "/api/trades?before=2147483648", b"", {}),
              ("/api/sessions status empty", "GET", "/api/sessions?status=", b"", {})]
    for char in HOSTILE_CHARS:
        for field in ("reason", "updated_by"):
            for where in ("start", "middle", "end"):
                text = {"start": f"{char}abc", "middle": f"ab{char}c", "end": f"abc{char}"}[where]
                cases.append((f"U+{ord(char):04X} at the {where} of {field}", "POST", "/api/balance",
                              _dumps({**VALID, field: text}), {}))
    for key in BAD_KEYS:
        cases.append((f"Idempotency-Key {key[:12]!r} ({len(key)} chars)", "POST", "/api/balance", _dumps(VALID),
                      {"Idempotency-Key": key}))
    for content_type in BAD_CONTENT_TYPES:
        cases.append((f"Content-Type {content_type}", "POST", "/api/balance", _dumps(VALID),
                      {"Content-Type": content_type}))
    for encoding in ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"):
        raw = json.dumps(VALID).encode(encoding)
        cases.append((f"body in {encoding}", "POST", "/api/balance", raw, {}))
        cases.append((f"body in {encoding}, declared", "POST", "/api/balance", raw,
                      {"Content-Type": f"application/json; charset={encoding}"}))
    return cases


HOSTILE_TABLE = _hostile_table()


def ledger_bytes(engine: Engine) -> list[tuple[str, ...]]:
    """Every column of every ledger and session row, as the database's own text: nothing may differ after."""
    from sqlalchemy import text

    with engine.connect() as conn:
        return [tuple(str(v) for v in row)
                for table in ("account_balances", "trading_sessions", "positions", "trades")
                for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))]


def test_the_hostile_table_holds_at_least_300_distinct_requests() -> None:
    assert len(HOSTILE_TABLE) >= 300
    assert len({c[0] for c in HOSTILE_TABLE}) == len(HOSTILE_TABLE)


def test_every_request_of_the_hostile_table_gets_a_4xx_json_error_and_the_ledger_stays_byte_for_byte_the_same(
        client: Client, start_session, engine: Engine) -> None:
    start_session("1000")
    before = ledger_bytes(engine)
    failures = []
    for name, method, path, raw, extra in HOSTILE_TABLE:
        headers = {**post_json(WRITE_TOKEN), **extra} if method == "POST" else auth(WRITE_TOKEN)
        if method == "POST":
            response = client.http.post(path, headers=headers, body=raw)
        else:
            response = client.http.get(path, headers=headers)
        try:
            _assert_refused(response)
            assert response.headers.get("Cache-Control") == "no-store"
        except (AssertionError, KeyError, ValueError) as exc:
            failures.append((name, response.status_code, response.body[:200], repr(exc)[:100]))
    assert not failures, [f[:2] for f in failures]
    assert ledger_bytes(engine) == before


@pytest.mark.parametrize("number", ["1e1000000", "1e-99999999999999999999", "10000000000000000000000000.000000001"])
@pytest.mark.parametrize("spelling", ["number", "text"])
def test_a_number_of_any_size_is_refused_with_422_or_400_never_500(
        client: Client, start_session, engine: Engine, number: str, spelling: str) -> None:
    start_session("1000")
    raw = (b'{"amount": %s, "reason": "r"}' % number.encode() if spelling == "number"
           else _dumps({"amount": number, "reason": "r"}))
    response = client.http.post("/api/balance", headers=post_json(), body=raw)
    assert response.status_code in (400, 422), response.body
    _assert_refused(response)


def test_an_empty_session_id_on_a_write_is_an_error_not_the_default_session(
        client: Client, start_session, engine: Engine) -> None:
    start_session("1000")
    before = ledger_bytes(engine)
    response = client.http.post("/api/balance?session_id=", headers=post_json(), body=_dumps(VALID))
    assert _assert_refused(response)["code"] == "invalid_parameter"
    assert ledger_bytes(engine) == before
