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
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from chalicelib.api.errors import ApiError

logger = logging.getLogger("atb.api.auth")

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


def _token(name: str, scope: str, token: str) -> ApiToken | None:
    name, scope, token = name.strip(), scope.strip().lower(), token.strip()
    if not name or not token or scope not in SCOPES:
        logger.warning("ignoring a malformed API token entry (name %r, scope %r)", name, scope)
        return None
    return ApiToken(name, "write" if scope == "write" else "read", _digest(token))


@functools.lru_cache(maxsize=8)
def parse_tokens(text: str) -> tuple[ApiToken, ...]:
    """Parse ``name:scope:token,…`` or the JSON form ``{"tokens": [{"name", "scope", "token"}]}``."""
    text = text.strip()
    if not text:
        return ()
    tokens: list[ApiToken | None] = []
    if text.startswith("{"):
        try:
            document: Any = json.loads(text)
        except ValueError:
            logger.warning("the API token secret is not valid JSON")
            return ()
        entries = document.get("tokens") if isinstance(document, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict):
                tokens.append(_token(str(entry.get("name", "")), str(entry.get("scope", "")),
                                     str(entry.get("token", ""))))
    else:
        for item in text.split(","):
            parts = item.split(":", 2)
            tokens.append(_token(*parts) if len(parts) == 3 else _token("", "", ""))
    return tuple(t for t in tokens if t is not None)


def configured_tokens() -> tuple[ApiToken, ...]:
    """``ATB_API_TOKENS`` when set (like ``DATABASE_URL``, the explicit local value wins), else the secret."""
    local = os.environ.get("ATB_API_TOKENS", "").strip()
    if local:
        return parse_tokens(local)
    arn = os.environ.get("ATB_API_TOKENS_SECRET_ARN", "").strip()
    if not arn:
        return ()
    from chalicelib.settings import get_secret_text

    return parse_tokens(get_secret_text(arn, "the API token secret"))


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
