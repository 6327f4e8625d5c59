"""The Chalice app: wiring only. Each route, the schedule and the migration function call one service in
``chalicelib``; no SQL and no business rules live here. Heavy modules (ccxt) are imported only on the tick path.
"""

from __future__ import annotations

from chalice import Chalice

app = Chalice(app_name="atb")

# --- HTTP API (issue 4) ----------------------------------------------------------------------------------------

# --- Scheduled tick (issue 3) ----------------------------------------------------------------------------------

# --- Migrations on deploy (issue 5) ----------------------------------------------------------------------------
