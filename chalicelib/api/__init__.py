"""The HTTP API behind ``app.py``: request schemas, one error shape, bearer-token auth, route handlers, OpenAPI.

Modules here import SQLAlchemy and pydantic lazily (inside functions) so that ``import app`` stays cheap for a
cold Lambda; the first request that needs them pays the import once per warm container.
"""
