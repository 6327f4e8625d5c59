"""The dashboard: one static page and its assets, served by the Chalice app itself (no CDN, works offline).

The page holds no data: it asks for an API token, keeps it in session storage and reads everything from
``/api/*`` with it, so these routes need no auth. Assets are bundled in ``chalicelib/static`` and served with
a strict Content-Security-Policy (scripts and styles from this origin only, no inline code, no framing).
``GET /api/me`` (``api/handlers.get_me``) tells the page the caller's name and scope, so a read token sees no
change form.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from chalice import Response

from chalicelib.api.errors import error_response

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE = "index.html"

#: What the page may load and from where: this origin only, and nothing inline.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
#: Text assets only (API Gateway would need binary media types for anything else).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml; charset=utf-8",
}
_ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\.(?:js|css|svg)$")


@functools.lru_cache(maxsize=32)
def _read(name: str) -> str | None:
    path = STATIC_DIR / name
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _file_response(name: str) -> Response:
    text = _read(name)
    if text is None:
        return error_response(404, "not_found", f"no asset named {name!r}")
    content_type = CONTENT_TYPES[Path(name).suffix]
    return Response(body=text, status_code=200, headers={"Content-Type": content_type, **SECURITY_HEADERS})


def page() -> Response:
    """The dashboard page (``GET /``)."""
    return _file_response(PAGE)


def asset(name: str | None) -> Response:
    """A bundled script, stylesheet or icon (``GET /static/{name}``); anything else is a 404."""
    if not name or not _ASSET_NAME.fullmatch(name):
        return error_response(404, "not_found", "no such asset")
    return _file_response(name)
