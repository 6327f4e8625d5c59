"""The pure trading domain: candles, feeds, strategies, the paper broker and the risk rules.

No database and no clock here (feeds do network/file I/O; everything else is pure functions over Decimal).
The tick engine composes these pieces; the signatures it needs:

candles (``chalicelib.trading.candles``)
    Candle(open_time: datetime [UTC, OPEN time], open, high, low, close, volume: Decimal)  # frozen
    Candle.close_time(timeframe) -> datetime
    timeframe_to_timedelta(timeframe: str) -> timedelta      # 1m 5m 15m 30m 1h 4h 1d; else UnsupportedTimeframeError
    last_closed_open_time(now: datetime, timeframe: str) -> datetime
    floor_to_grid(moment, timeframe) -> datetime;  is_on_grid(open_time, timeframe) -> bool
    is_closed(candle, timeframe, now) -> bool;  to_epoch_ms(dt) -> int;  from_epoch_ms(ms) -> datetime
    validate_candles(candles, timeframe, after: datetime | None = None) -> ValidatedCandles
        ValidatedCandles(candles: tuple[Candle, ...], gaps: tuple[Gap, ...]);  Gap(after, before, missing)
        raises BadCandleError(open_time, problem) -- one line: "bad candle 2024-01-01T00:00:00Z: high 80 is ..."

feeds (``chalicelib.trading.feeds``)
    Feed.fetch_closed_candles(symbol, timeframe, since: datetime | None, limit: int, now: datetime)
        -> list[Candle]   # closed at now, open_time > since, oldest first; since=None -> newest `limit`
    ReplayFeed(csv_path=None, *, symbol=None, timeframe=None)   # default: the bundled data for the symbol
                                                                # (BTCUSDT, ETHUSDT 1h); .describe() -> str
        .reveal_next(symbol, timeframe, after: datetime | None, count=1) -> list[Candle]
        .replay_now(symbol, timeframe, after, count=1) -> datetime | None   # "now" for replay ticks
        .all_candles(symbol, timeframe) -> tuple[Candle, ...]
    CcxtFeed(exchange_id="binance", timeout_ms=10000, retries=3, *, backoff_s=1.0, sleep=time.sleep)
    FeedError (one-line message)

symbols (``chalicelib.trading.symbols``) -- the one symbol parser
    parse_symbol("btc/usdt") -> Symbol(base="BTC", quote="USDT"); .plain "BTCUSDT", .ccxt "BTC/USDT"
    .usd_quoted: USD or a USD stablecoin (how other quotes become dollars: ``chalicelib.valuation``)

strategies (``chalicelib.trading.strategies``)
    get_strategy(name) -> Strategy   # UnknownStrategyError lists the names;  available_strategies() -> list[str]
    Strategy: .name: str, .warmup: int, .decide(candles: Sequence[Candle], position: PositionView | None)
    decide_safely(strategy, candles, position) -> Decision   # Hold while warming up; raises StrategyError
    Decision = Hold(reason) | EnterLong(stop_loss, take_profit, reason) | Exit(reason);  each has .kind
    Pass ``candles[: t + 1]`` (at least the last ``warmup``) to decide on candle t.

position (``chalicelib.trading.position``)
    PositionView(entry_price, quantity, stop_loss, take_profit, opened_at: datetime, side="long"); .cost

broker (``chalicelib.trading.broker``)
    BrokerConfig(fee_rate=Decimal("0.001"), slippage_bps=Decimal(5))
    market_buy(candle, quantity, config=None) -> Fill     # at close + slippage
    market_sell(candle, quantity, config=None) -> Fill    # at close - slippage (strategy exit)
    check_exit(position, candle) -> ExitSignal | None     # ExitSignal(price, reason, gapped)
    exit_fill(position, signal, config=None) -> Fill      # stop: slippage; target: limit price
    Fill(price, quantity, notional, fee);  fee_for(notional, fee_rate) -> Decimal
    gross_pnl(entry_price, exit_price, quantity) -> Decimal
    close_trade(position, sell: Fill, entry_fee) -> ClosedTrade(.gross_pnl, .entry_fee, .exit_fee, .fees, .net_pnl)

risk (``chalicelib.trading.risk``)
    RiskConfig(max_position_fraction=0.10, risk_per_trade=0.02, max_drawdown=0.20)   # Decimals
    size_position(balance, available, entry_price, stop_loss, *, fee_rate=0.001, config=None) -> Sizing
        Sizing(quantity, binding: "position_cap" | "risk_cap" | "cash_cap" | "none")
    drawdown(value, peak) -> Decimal (``chalicelib.accounting``'s, on the value per unit)
    can_open(value, peak, limit=Decimal("0.20")) -> bool   # False once drawdown >= limit

One candle, in the engine's order: ``check_exit`` on the open position (fill with ``exit_fill``), then
``decide_safely`` on the history up to that candle; on ``EnterLong`` and ``can_open``: price with
``market_buy(candle, 1).price`` or ``buy_price``, size with ``size_position``, fill with ``market_buy``; on
``Exit``: ``market_sell``. The engine (``chalicelib/bot/tick.py``) is the one loop that does this.
"""
