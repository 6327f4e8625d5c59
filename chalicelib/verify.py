"""``atb db verify``: prove that every account's money adds up, or say exactly which account, row and rule fails.

Per account, reading one snapshot:
  1. the first row is an opening (initial capital, a reset, a recovery) and holds exactly its own delta;
  2. every row's balance follows from the one before (previous total + delta), and available = total − reserved
     ≥ 0; the cached total/available/reserved and units equal the latest row's;
  3. each row's kind agrees with its reference and its sign (a fee is a charge on a position or trade, a
     deposit is money in from a request, an event moves nothing), so a relabelled row is caught;
  4. each row's equity is its cash plus the quantities it holds, each asset at its pair's close in force when the
     row was written (the pair's own candle for a trade's rows; at cost before any candle; an asset two of the
     bot's pairs share cannot be told apart in a row and is not revalued), and its units, value per unit and
     performance index follow from the row before
     by the unit rules (``chalicelib.accounting``): flows issue or redeem units at the value per unit, trading
     moves the value, openings and resets start a series;
  5. each closed trade's P&L and fees equal its ledger rows; reserved = Σ cost of open positions;
  6. the cached value per unit is the equity at the last close over the units, never above the peak, and the
     net contributions follow from the flows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from chalicelib import accounting
from chalicelib.accounting import UnitState
from chalicelib.db.migrate import SchemaStatus, schema_status
from chalicelib.db.models import AccountBalance, Position, TickLog, Trade, TradingSession
from chalicelib.db.uow import read_transaction
from chalicelib.ledger import (
    CAPITAL_FLOW_KINDS,
    EVENT_KINDS,
    OPENING_KINDS,
    SERIES_START_KINDS,
    TRADING_KINDS,
    equity_of,
)
from chalicelib.ledger import unit_state as ledger_unit_state
from chalicelib.money import ZERO, money_text, quantize_money
from chalicelib.trading.symbols import parse_symbol

#: What each kind's reference must look like (None: no reference).
_REFERENCES: dict[str, tuple[str | None, ...]] = {
    "initial": (None,),
    "reset": (None,),
    "resumed": (None,),
    "recovered_from_trades": (r"migration:\d+",),
    "deposit": (None, r"request:.+"),
    "withdrawal": (None, r"request:.+", r"carried-to:\d+"),
    "manual_set": (None, r"request:.+"),
    "fee": (r"position:\d+:open", r"trade:\d+:exit_fee"),
    "trade_pnl": (r"trade:\d+:pnl",),
    "strategy_switch": (None,),
    "reopened": (None,),
}


def _reference_fits(kind: str, reference: str | None) -> bool:
    for pattern in _REFERENCES.get(kind, ()):
        if pattern is None and reference is None:
            return True
        if pattern is not None and reference is not None and re.fullmatch(pattern, reference):
            return True
    return False


def _sign_fits(kind: str, delta: Decimal) -> bool:
    if kind == "deposit":
        return delta > 0
    if kind == "withdrawal":
        return delta < 0
    if kind == "fee":
        return delta <= 0
    if kind in EVENT_KINDS:
        return delta == 0
    return True


@dataclass
class SessionReport:
    session_id: int
    label: str
    entries: int = 0
    total: Decimal = ZERO
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class VerifyReport:
    schema: SchemaStatus
    sessions: list[SessionReport]

    @property
    def ok(self) -> bool:
        return self.schema.at_head and all(s.ok for s in self.sessions)


def verify(engine: Engine) -> VerifyReport:
    status = schema_status(engine)
    if not status.at_head:
        return VerifyReport(status, [])
    reports: list[SessionReport] = []
    with read_transaction(engine) as db:
        for session in db.execute(select(TradingSession).order_by(TradingSession.id)).scalars():
            reports.append(_verify_session(db, session))
    return VerifyReport(status, reports)


def _verify_session(db: Session, session: TradingSession) -> SessionReport:
    report = SessionReport(
        session.id, f"{session.strategy} {session.symbol} {session.timeframe} {session.mode} ({session.status})"
    )
    ticks = list(db.execute(
        select(TickLog).where(TickLog.session_id == session.id, TickLog.ledger_version.is_not(None))
        .order_by(TickLog.id)  # the order the candles were applied in (a late pair's candle comes after the others)
    ).scalars())
    closes: dict[tuple[str, datetime | None], Decimal] = {
        (t.symbol, t.market_time): t.close_price for t in ticks if t.market_time is not None}
    pair_of = dict(db.execute(select(Position.id, Position.symbol).where(Position.session_id == session.id)).all())
    rows = db.execute(
        select(AccountBalance)
        .where(AccountBalance.session_id == session.id)
        .order_by(AccountBalance.id)
        .execution_options(yield_per=2000)
    ).scalars()
    checker = _LedgerChecker(report, closes, pair_of, list(session.symbols))
    pending = iter(ticks)
    tick = next(pending, None)
    for row in rows:
        # Ticks done when the ledger had fewer rows than this one come before it (a tick row records the number).
        while tick is not None and (tick.ledger_version or 0) <= checker.report.entries:
            checker.check_tick(tick)
            tick = next(pending, None)
        checker.check(row)
    while tick is not None:
        checker.check_tick(tick)
        tick = next(pending, None)
    last = checker.last
    if last is None:
        report.problems.append("no ledger rows: the account has no recorded starting capital")
        return report
    report.total = session.total_balance
    _check_cache(report, session, last, checker, ticks)
    _check_positions_and_trades(db, report, session, checker)
    return report


class _LedgerChecker:
    """Walks one account's ledger in order, checking each row against the one before (rules 1–4)."""

    def __init__(self, report: SessionReport, closes: dict[tuple[str, datetime | None], Decimal],
                 pair_of: dict[int, str], symbols: list[str]) -> None:
        self.report = report
        self.closes = closes
        self.pair_of = pair_of  # position id → its pair
        #: each base asset's pair, when only one of the bot's pairs has it (a shared asset cannot be revalued)
        bases = [parse_symbol(s).base for s in symbols]
        self.asset_pair = {b: s for b, s in zip(bases, symbols, strict=True) if bases.count(b) == 1}
        self.marks: dict[str, Decimal] = {}  # each pair's close in force, as the tick rows are walked
        self.last: AccountBalance | None = None
        self.first: AccountBalance | None = None
        self.state = accounting.EMPTY
        self.contributions = ZERO
        self.peak_needed = accounting.ONE
        self.last_value = accounting.ONE
        self.by_reference: dict[str, AccountBalance] = {}
        self.reserved_change: dict[str, Decimal] = {}

    def problem(self, row: AccountBalance, rule: str) -> None:
        self.report.problems.append(f"ledger row {row.id} ({row.kind}): {rule}")

    def check(self, row: AccountBalance) -> None:
        self.report.entries += 1
        previous = self.last
        if previous is None:
            self.first = row
            if row.kind not in OPENING_KINDS:
                self.problem(row, "the first row is not the starting capital (initial, reset or recovery)")
            if row.total_balance != row.delta:
                self.problem(row, f"the first row's balance after {money_text(row.total_balance)} is not its own "
                                  f"amount {money_text(row.delta)}")
        elif row.total_balance != previous.total_balance + row.delta:
            self.problem(row, f"balance after is {money_text(row.total_balance)} but the row before "
                              f"({money_text(previous.total_balance)}) plus this row's amount "
                              f"({money_text(row.delta)}) is {money_text(previous.total_balance + row.delta)}")
        if row.available_balance != row.total_balance - row.reserved_balance:
            self.problem(row, "available ≠ total − reserved")
        if row.available_balance < 0 or row.reserved_balance < 0:
            self.problem(row, "available or reserved balance is negative")
        if not _reference_fits(row.kind, row.reference):
            self.problem(row, f"reference {row.reference!r} does not belong to a {row.kind} row")
        if not _sign_fits(row.kind, row.delta):
            self.problem(row, f"a {row.kind} row cannot move {money_text(row.delta)}")
        if row.reference is not None:
            self.by_reference[row.reference] = row
            self.reserved_change[row.reference] = row.reserved_balance - (
                previous.reserved_balance if previous is not None else ZERO)
        self._check_equity(row)
        self._check_units(row)
        self.last = row
        self.last_value = row.unit_value

    def check_tick(self, tick: TickLog) -> None:
        """A tick row marks the account at its candle's close: the units of the row in force, its cash plus its
        holdings at the close, the value per unit that makes, and the index (legacy rows, written before the
        ledger had versions, are not read)."""
        row, state = self.last, self.state
        where = f"tick row {tick.id} (candle {tick.candle_time:%Y-%m-%d %H:%M})"
        if row is None:
            self.report.problems.append(f"{where}: a candle was applied before the account's first ledger row")
            return
        self.marks[tick.symbol] = tick.close_price
        holdings = self._holdings_value(row, self.marks)
        if holdings is None:  # an asset two pairs share: take the row's own figure
            holdings = (tick.equity or ZERO) - row.available_balance
        equity = row.available_balance + holdings
        value = accounting.value_per_unit(equity, state.units) if state.units > 0 else state.unit_value
        index = UnitState(state.units, value, accounting.ONE, state.series_base).performance_index
        expected = (state.units, equity, value, index)
        got = (tick.units, tick.equity, tick.unit_value, tick.performance_index)
        if got != expected:
            self.report.problems.append(
                f"{where}: units, equity, value per unit and index {got} are not the ledger row {row.id}'s units "
                f"with its cash and holdings at the closes {self._show(self.marks)}: {expected}")
        self.peak_needed = max(self.peak_needed, value)
        self.state = UnitState(state.units, value, self.peak_needed, state.series_base)
        self.last_value = value

    def _check_equity(self, row: AccountBalance) -> None:
        marks = dict(self.marks)
        pair = self._pair_of_row(row)
        close = self.closes.get((pair, row.market_time)) if pair is not None else None
        if pair is not None and close is not None:
            marks[pair] = close  # a trade's rows value its pair at the close of the candle that traded
        expected: Decimal | None
        if not marks:
            expected = row.total_balance  # at cost: no candle applied yet
        else:
            value = self._holdings_value(row, marks)
            expected = row.available_balance + value if value is not None else None
        if expected is not None and row.equity != expected:
            mark = f"at the closes {self._show(marks)}" if marks else "at cost (no candle applied)"
            self.problem(row, f"equity {money_text(row.equity)} is not its cash plus its holdings {mark}: "
                              f"{money_text(expected)}")

    def _pair_of_row(self, row: AccountBalance) -> str | None:
        """The pair a trading row belongs to (its position's), None for any other row."""
        match = re.fullmatch(r"(?:position|trade):(\d+):\w+", row.reference or "")
        return self.pair_of.get(int(match.group(1))) if match else None

    def _holdings_value(self, row: AccountBalance, marks: dict[str, Decimal]) -> Decimal | None:
        """The row's quantities, each asset at its pair's close (money scale, once per asset as the tick rounds
        once per pair); None when an asset cannot be valued (two pairs share it, or its pair has no close)."""
        total = ZERO
        for asset, quantity in row.asset_balances.items():
            if asset == row.base_currency:
                continue
            pair = self.asset_pair.get(asset)
            if pair is None or pair not in marks:
                return None
            total += quantize_money(Decimal(str(quantity)) * marks[pair])
        return total

    @staticmethod
    def _show(marks: dict[str, Decimal]) -> str:
        return ", ".join(f"{pair} {money_text(close)}" for pair, close in sorted(marks.items()))

    def _check_units(self, row: AccountBalance) -> None:
        """Units follow from the row before: a series start holds one unit per dollar at 1; a flow is priced at
        a value per unit whose units reproduce the equity before it; trading leaves the units and sets the value
        to equity / units; the index is the series base × the value (marks between rows move the value, so each
        row is checked against its own equity rather than the previous row's value)."""
        prev = self.state
        kind, equity = row.kind, row.equity
        starts = kind in SERIES_START_KINDS or (kind in CAPITAL_FLOW_KINDS and (prev.units <= 0 or prev.unit_value <= 0)
                                                 and equity > 0)
        if starts:
            expected_units, expected_value = accounting.quantize_units(equity), accounting.ONE
            base = row.performance_index
        else:
            base = prev.series_base
            expected_value = row.unit_value
            if kind in CAPITAL_FLOW_KINDS:
                priced = UnitState(prev.units, row.unit_value, prev.peak_unit_value, base)
                if prev.units > 0 and not accounting.units_reproduce_equity(priced, equity - row.delta):
                    self.problem(row, f"the flow was priced at {row.unit_value} per unit, which does not value the "
                                      f"{prev.units} units before it at the equity before it "
                                      f"({money_text(equity - row.delta)})")
                expected_units = accounting.after_flow(priced, equity - row.delta, row.delta).units
            elif kind in TRADING_KINDS and prev.units > 0:
                expected_units, expected_value = prev.units, accounting.value_per_unit(equity, prev.units)
            else:
                expected_units = prev.units
        if kind in SERIES_START_KINDS or kind in CAPITAL_FLOW_KINDS:
            self.contributions = row.total_balance if kind in SERIES_START_KINDS else self.contributions + row.delta
        if (row.units, row.unit_value) != (expected_units, expected_value):
            self.problem(row, f"units {row.units} × value per unit {row.unit_value} do not follow from the row "
                              f"before by the unit rules (expected {expected_units} × {expected_value})")
        elif kind not in EVENT_KINDS and not accounting.units_reproduce_equity(
                UnitState(row.units, row.unit_value, prev.peak_unit_value, base), equity):
            self.problem(row, "units × value per unit do not reproduce the row's equity")
        if starts:
            carried = UnitState(prev.units, self.last_value, accounting.ONE, prev.series_base).performance_index
            if row.performance_index != carried:
                self.problem(row, f"performance index {row.performance_index} does not carry on from "
                                  f"{carried} where the series before ended (1 for the first row)")
        elif row.performance_index != UnitState(row.units, row.unit_value, accounting.ONE,
                                                base).performance_index:
            self.problem(row, f"performance index {row.performance_index} is not the series base {base} × the "
                              f"value per unit {row.unit_value}")
        # the state's peak already holds every tick's value (check_tick keeps it equal to peak_needed)
        peak = accounting.ONE if starts else max(prev.peak_unit_value, row.unit_value)
        self.state = UnitState(row.units, row.unit_value, peak, base)
        self.peak_needed = peak


def _check_cache(report: SessionReport, session: TradingSession, last: AccountBalance,
                 checker: _LedgerChecker, ticks: list[TickLog]) -> None:
    problems = report.problems
    for name in ("total_balance", "available_balance", "reserved_balance", "units"):
        cached, ledgered = getattr(session, name), getattr(last, name)
        if cached != ledgered:
            show = str if name == "units" else money_text
            problems.append(f"cached {name.replace('_', ' ')} {show(cached)} ≠ latest ledger row {last.id}: "
                            f"{show(ledgered)}")
    if session.available_balance != session.total_balance - session.reserved_balance:
        problems.append("available ≠ total − reserved")
    if session.available_balance < 0:
        problems.append(f"available balance is negative ({money_text(session.available_balance)})")
    if session.net_contributions != checker.contributions:
        problems.append(f"cached net contributions {money_text(session.net_contributions)} ≠ initial capital and "
                        f"flows since the last reset {money_text(checker.contributions)}")
    if session.peak_unit_value != checker.peak_needed:
        problems.append(f"cached peak value per unit {session.peak_unit_value} ≠ the highest value per unit of the "
                        f"current series in the ledger and the tick rows ({checker.peak_needed})")
    if session.unit_value != checker.last_value:
        problems.append(f"cached value per unit {session.unit_value} ≠ the newest row's ({checker.last_value})")
    first = checker.first
    if first is not None and first.kind == "initial" and session.initial_balance != first.delta:
        problems.append(f"cached initial balance {money_text(session.initial_balance)} ≠ the first ledger row "
                        f"{first.id}'s capital {money_text(first.delta)}")
    for symbol, mark in session.marks.items():
        at_cursor = next((t for t in reversed(ticks) if t.symbol == symbol and t.candle_time == mark.cursor), None)
        if at_cursor is not None and mark.close != at_cursor.close_price:
            problems.append(f"cached mark of {symbol} {mark.close} ≠ the close of its newest applied candle, tick row "
                            f"{at_cursor.id}: {money_text(at_cursor.close_price)}")
    if session.series_base != checker.state.series_base:
        problems.append(f"cached series base {session.series_base} ≠ the ledger's {checker.state.series_base}")


def _check_positions_and_trades(db: Session, report: SessionReport, session: TradingSession,
                                checker: _LedgerChecker) -> None:
    problems, by_reference = report.problems, checker.by_reference
    positions = {p.id: p for p in db.execute(select(Position).where(Position.session_id == session.id)).scalars()}
    open_cost = sum((p.cost for p in positions.values() if p.status == "open"), ZERO)
    if session.reserved_balance != open_cost:
        problems.append(
            f"reserved {money_text(session.reserved_balance)} ≠ cost of open positions {money_text(open_cost)}"
        )
    equity = equity_of(session, [p for p in positions.values() if p.status == "open"])
    if not accounting.units_reproduce_equity(ledger_unit_state(session), equity):
        problems.append(f"cached units {session.units} × value per unit {session.unit_value} do not reproduce the "
                        f"equity at the last close, {money_text(equity)}")
    recovered = any(r.kind == "recovered_from_trades" for r in by_reference.values())
    for p in positions.values():
        opened = by_reference.get(f"position:{p.id}:open")
        if opened is None:
            if not recovered:
                problems.append(f"position {p.id}: no ledger row opened it")
            continue
        if quantize_money(p.quantity * p.entry_price) != p.cost:
            problems.append(f"position {p.id}: cost {money_text(p.cost)} ≠ quantity × entry price")
        if checker.reserved_change.get(f"position:{p.id}:open") != p.cost:
            problems.append(f"position {p.id}: cost {money_text(p.cost)} ≠ what its ledger row {opened.id} reserved")
        if p.status == "open" and -opened.delta != p.fees:
            problems.append(f"position {p.id}: entry fee {money_text(p.fees)} ≠ its ledger row {opened.id}: "
                            f"{money_text(-opened.delta)}")
    _check_trades(db, report, session, checker, positions, recovered)


def _check_trades(db: Session, report: SessionReport, session: TradingSession, checker: _LedgerChecker,
                  positions: dict[int, Position], recovered: bool) -> None:
    """Each closed trade against its ledger rows (P&L, fees) and its position."""
    problems, by_reference = report.problems, checker.by_reference
    for trade in _trades(db, session.id):
        pnl_row = by_reference.get(f"trade:{trade.position_id}:pnl")
        exit_fee = by_reference.get(f"trade:{trade.position_id}:exit_fee")
        entry_fee = by_reference.get(f"position:{trade.position_id}:open")
        if recovered and entry_fee is None:
            continue  # traded before the ledger existed: its money is in the recovery row (migration 0002)
        if pnl_row is None or pnl_row.kind != "trade_pnl" or pnl_row.delta != trade.realized_pnl:
            problems.append(f"trade {trade.id}: realised P&L {money_text(trade.realized_pnl)} ≠ its ledger row "
                            f"{pnl_row.id if pnl_row else '(missing)'}: "
                            f"{money_text(pnl_row.delta) if pnl_row else '-'}")
        if quantize_money((trade.exit_price - trade.entry_price) * trade.quantity) != trade.realized_pnl:
            problems.append(f"trade {trade.id}: realised P&L {money_text(trade.realized_pnl)} ≠ (exit − entry) × "
                            "quantity")
        charged = -sum((r.delta for r in (entry_fee, exit_fee) if r is not None and r.kind == "fee"), ZERO)
        if charged != trade.fees:
            problems.append(f"trade {trade.id}: fees {money_text(trade.fees)} ≠ its ledger fee rows "
                            f"({money_text(charged)})")
        position = positions.get(trade.position_id) if trade.position_id is not None else None
        if position is None:
            problems.append(f"trade {trade.id}: position {trade.position_id} is not this account's")
            continue
        same = ("quantity", "entry_price", "exit_price", "realized_pnl", "fees")
        for name in same:
            if getattr(position, name) != getattr(trade, name):
                problems.append(f"trade {trade.id}: {name.replace('_', ' ')} {getattr(trade, name)} ≠ its position "
                                f"{position.id}'s {getattr(position, name)}")


def _trades(db: Session, session_id: int) -> Iterable[Trade]:
    return db.execute(select(Trade).where(Trade.session_id == session_id).order_by(Trade.id)).scalars()
