"""How large an id from outside (a query parameter, a CLI option) may be: what the column holding it can store.

Ids are refused above these before the database sees them (PostgreSQL would fail the statement with "out of
range", which is an error of the caller's, not of the service). No imports: the API path loads this at start.
"""

from __future__ import annotations

#: Largest id an ``INTEGER`` key holds (sessions, positions, trades).
MAX_INT_ID = 2**31 - 1
#: Largest id a ``BIGINT`` key holds (the ledger, the tick log).
MAX_BIGINT_ID = 2**63 - 1
