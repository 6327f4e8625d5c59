"""The strategy lab: backtest reports, the look-ahead check and parameter search (docs/lab.md).

Not part of the Lambda bundle (Chalice ships ``app.py`` and ``chalicelib/`` only): nothing here is needed to trade
a strategy, only to study one. The backtests themselves run the live engine (:mod:`chalicelib.bot.backtest`).
"""
