"""The tick engine: the one place a tick transaction is framed, and what runs it.

* :func:`tick_session` (``tick``) — one session, one transaction, every unprocessed closed candle exactly once;
* :func:`open_session` / :func:`switch_strategy` (``sessions``) — find, resume, start fresh, switch strategy,
  and report what was recovered;
* :class:`LiveTradingEngine` (``runner``) — a bot on a replay or an exchange feed (``atb live``);
* :func:`run_scheduled_tick` (``scheduled``) — the Lambda's hourly tick over ``ATB_BOTS``;
* :func:`run_backtest` (``backtest``) — the same engine over recorded candles in a throwaway database.

Import the submodules directly; this package imports nothing heavy on its own.
"""
