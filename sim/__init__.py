"""A deterministic simulator in the spirit of TigerBeetle's VOPR: one seed draws a reproducible sequence of
operations and faults against the real code, and a pure-Python model of the ledger checks every step.

Run as ``python -m sim --seed N --steps K --db sqlite|postgres``. Not part of the Lambda bundle (packaging takes
``app.py``, ``chalicelib`` and ``migrations`` only).
"""
