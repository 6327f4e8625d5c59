"""Bearer-token authentication with two scopes, ``read`` and ``write`` (write implies read).

Tokens are ``name:scope:token`` entries, comma-separated. Locally they come from ``ATB_API_TOKENS``; in AWS from
the Secrets Manager secret named by ``ATB_API_TOKENS_SECRET_ARN`` (fetched through powertools Parameters and
cached for ``ATB_SECRET_MAX_AGE`` seconds), whose value is either the same string or JSON
``{"tokens": [{"name": …, "scope": …, "token": …}]}``. ``ATB_API_TOKENS`` wins when both are set (as
``DATABASE_URL`` wins over ``DATABASE_SECRET_ARN``), so ``chalice local`` uses local tokens under any stage.

Presented tokens are compared with every configured token in constant time (``hmac.compare_digest`` over
SHA-256 digests, so neither the content nor the length of a token leaks through timing). The token's *name* is
who the ledger records; a label in the request body is kept beside it, never instead of it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aws_lambda_powertools import Logger

from chalicelib import logs
from chalicelib.api.errors import ApiError
from chalicelib.settings import ConfigurationError

logger = Logger(service=logs.SERVICE, child=True)

Scope = Literal["read", "write"]
SCOPES: tuple[Scope, ...] = ("read", "write")
REALM = 'Bearer realm="atb"'


@dataclass(frozen=True)
class ApiToken:
    name: str
    scope: Scope
    digest: bytes = field(repr=False)  # SHA-256 of the token; the token itself is not kept

    def allows(self, required: Scope) -> bool:
        return self.scope == "write" or required == "read"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    name: str
    scope: Scope


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


#: A token's name: it is recorded as ``updated_by`` and scopes idempotency keys, so it is short and plain.
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")  # 32: service.MAX_TOKEN_NAME
#: Shortest token accepted: 32 characters (``openssl rand -hex 16``, ``secrets.token_urlsafe(24)``).
MIN_TOKEN_LENGTH = 32
_TOKEN = re.compile(rf"^[\x21-\x7e]{{{MIN_TOKEN_LENGTH},512}}$")
#: Rotation: a name may have two tokens (old and new, same scope) while clients move to the new one.
MAX_TOKENS_PER_NAME = 2


class TokenConfigurationError(ConfigurationError):
    """``ATB_API_TOKENS`` (or its secret) is refused; the message names entries by position, never a field."""


def _token(position: int, name: str, scope: str, token: str) -> tuple[ApiToken, str]:
    """One entry, checked; errors say which entry (1-based) and what is wrong, and echo none of its fields."""
    where = f"API token entry {position}"
    name, scope, token = name.strip(), scope.strip().lower(), token.strip()
    if not _NAME.fullmatch(name):
        raise TokenConfigurationError(f"{where}: the name must be 1–32 letters, digits, '.', '_' or '-' "
                                      "(entries are name:scope:token)")
    if scope not in SCOPES:
        raise TokenConfigurationError(f"{where}: the scope must be read or write (entries are name:scope:token)")
    if not _TOKEN.fullmatch(token):
        raise TokenConfigurationError(f"{where}: the token must be {MIN_TOKEN_LENGTH}–512 visible ASCII characters "
                                      "(e.g. `openssl rand -hex 16`)")
    return ApiToken(name, "write" if scope == "write" else "read", _digest(token)), token


def _entries(text: str) -> list[tuple[str, str, str]]:
    if text.startswith("{"):
        try:
            document: Any = json.loads(text)
        except ValueError:
            raise TokenConfigurationError("the API token list is not valid JSON") from None
        entries = document.get("tokens") if isinstance(document, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise TokenConfigurationError('the API token JSON must be {"tokens": [{"name", "scope", "token"}, …]}')
        return [(str(e.get("name", "")), str(e.get("scope", "")), str(e.get("token", ""))) for e in entries]
    result = []
    for position, item in enumerate(text.split(","), start=1):
        parts = item.split(":", 2)
        if len(parts) != 3:
            raise TokenConfigurationError(f"API token entry {position} is not name:scope:token")
        result.append((parts[0], parts[1], parts[2]))
    return result


@functools.lru_cache(maxsize=8)
def parse_tokens(text: str) -> tuple[ApiToken, ...]:
    """Parse ``name:scope:token,…`` or the JSON form ``{"tokens": [{"name", "scope", "token"}]}``, refusing the
    whole list (``TokenConfigurationError``) when any entry is malformed or weak: a token shorter than 32
    characters, one token listed twice (under one scope or two), one name under two scopes, or more than two
    tokens for one name (two is rotation: the old and the new token during the overlap)."""
    text = text.strip()
    if not text:
        return ()
    tokens: list[ApiToken] = []
    seen_tokens: dict[str, int] = {}
    names: dict[str, list[tuple[int, ApiToken]]] = {}
    for position, (name, scope, secret) in enumerate(_entries(text), start=1):
        token, plain = _token(position, name, scope, secret)
        if plain in seen_tokens:
            raise TokenConfigurationError(f"API token entries {seen_tokens[plain]} and {position} have the same "
                                          "token; give every entry its own")
        seen_tokens[plain] = position
        same_name = names.setdefault(token.name, [])
        if same_name and same_name[0][1].scope != token.scope:
            raise TokenConfigurationError(f"API token entries {same_name[0][0]} and {position} give one name two "
                                          "scopes; one name has one scope")
        if len(same_name) >= MAX_TOKENS_PER_NAME:
            raise TokenConfigurationError(f"API token entry {position}: a name may have at most "
                                          f"{MAX_TOKENS_PER_NAME} tokens (the old and the new one while rotating)")
        same_name.append((position, token))
        tokens.append(token)
    return tuple(tokens)


def configured_tokens() -> tuple[ApiToken, ...]:
    """``ATB_API_TOKENS`` when set (like ``DATABASE_URL``, the explicit local value wins), else the secret."""
    from chalicelib.settings import api_token_text

    return parse_tokens(api_token_text())


def authenticate(headers: Mapping[str, str], required: Scope) -> Principal:
    """The caller named by the ``Authorization: Bearer`` header, allowed ``required``; else 401 or 403."""
    header = headers.get("authorization") or ""
    scheme, _, presented = header.strip().partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>", headers={"WWW-Authenticate": REALM})
    tokens = configured_tokens()
    if not tokens:
        logger.warning("no API tokens are configured (ATB_API_TOKENS or ATB_API_TOKENS_SECRET_ARN)")
    wanted = _digest(presented)
    match: ApiToken | None = None
    for token in tokens:  # no early exit: every configured token is compared
        if hmac.compare_digest(wanted, token.digest) and match is None:
            match = token
    if match is None:
        raise ApiError(401, "unauthorized", "the bearer token is not valid",
                       headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'})
    if not match.allows(required):
        raise ApiError(403, "forbidden", f"token {match.name!r} has scope {match.scope}; this needs {required}",
                       headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{required}"'})
    return Principal(match.name, match.scope)
