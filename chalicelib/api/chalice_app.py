"""The Chalice app class of the API Lambda: every HTTP invocation runs inside the service logger's Lambda context.

Chalice calls the app object itself for an HTTP event (the API function's handler is ``app.app``), so the
wrapping is here, around ``Chalice.__call__``: powertools' ``inject_lambda_context`` (``cold_start``,
``function_name`` … on every line the request logs) and ``correlation_id`` = the API Gateway request id.
"""

from __future__ import annotations

from typing import Any

from chalice import Chalice

from chalicelib import logs


class App(Chalice):
    """A ``Chalice`` whose HTTP entry point is wrapped by :func:`chalicelib.logs.lambda_entry`."""

    def __init__(self, app_name: str, **kwargs: Any) -> None:
        super().__init__(app_name, **kwargs)
        self._entry = logs.lambda_entry(logs.api_gateway_request_id)(self._serve)

    def _serve(self, event: Any, context: Any) -> Any:
        return super().__call__(event, context)

    def __call__(self, event: Any, context: Any) -> Any:
        return self._entry(event, context)
