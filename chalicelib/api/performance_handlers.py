"""``GET /api/performance``: attribution by strategy or by symbol over a market-time window (issue 13).

The figures come from ``chalicelib.performance.read_report``, the one function ``atb report`` calls too.
"""

from __future__ import annotations

from chalice import Response

from chalicelib.api.auth import Principal
from chalicelib.api.errors import ApiError, json_response
from chalicelib.api.handlers import ApiRequest, _param, _session_id, endpoint

PARAMS = ("session_id", "by", "from", "to")


@endpoint("read", PARAMS)
def get_performance(request: ApiRequest, _: Principal | None) -> Response:
    from chalicelib import performance
    from chalicelib.api.schemas import PerformanceResponse
    from chalicelib.db.engine import get_engine

    session_id = _session_id(request)
    try:
        by = performance.parse_by(_param(request, "by"))
        start, end = performance.window(_param(request, "from"), _param(request, "to"))
    except performance.ReportError as exc:
        raise ApiError(400, "invalid_parameter", str(exc), [{"field": exc.field, "message": str(exc)}]) from None
    report = performance.read_report(session_id, by, start, end, engine=get_engine())
    return json_response(PerformanceResponse.of(report).body())
