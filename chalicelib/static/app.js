// atb dashboard: vanilla JS, no dependencies. Reads /api/* with the token kept in session storage.
//
// Money: every JSON number is kept as its exact source text (JSON.parse reviver with context.source) and is
// formatted from that text; the page never does money arithmetic in floats. Floats are used only to place
// points on the chart. The change form sends the typed decimal text verbatim as a JSON number token.
'use strict';

(() => {
  const TOKEN_KEY = 'atb.token';
  const SESSION_KEY = 'atb.session';
  const RANGE_KEY = 'atb.range';
  const HISTORY_PAGE = 20;
  const CHART_PAGE = 500;
  const CHART_MAX_PAGES = 40; // 20,000 ledger rows at most per chart
  const REFRESH_MS = 60_000;
  const EXPOSURE_POINTS = 500; // the newest market times on the exposure chart (one page of GET /api/exposure)
  const BOUNDARIES = { strategy_switch: 'strategy switched', reset: 'account reset (--fresh)', reopened: 'bot started again' };
  const RANGES = { '24h': 86_400_000, '7d': 7 * 86_400_000, '30d': 30 * 86_400_000, all: null };

  const $ = (selector) => document.querySelector(selector);

  const state = {
    token: null,
    scope: null,
    sessions: [],
    sessionId: null,
    session: null,
    currency: '',
    range: '7d',
    historyCursors: [null], // stack: cursor of each page shown so far (null = newest)
    historyNext: null,
    pending: null, // {body, key} of a change whose response never arrived (retried with the same key)
    refreshes: 0,
    timer: null,
  };

  // --- exact decimals ------------------------------------------------------------------------------------------

  function parseJson(text) {
    return JSON.parse(text, function revive(_key, value, context) {
      if (typeof value === 'number') {
        return context && typeof context.source === 'string' ? context.source : String(value);
      }
      return value;
    });
  }

  const isZero = (text) => /^[-+]?0*\.?0*$/.test(String(text));
  const signOf = (text) => (isZero(text) ? 0 : String(text).trim().startsWith('-') ? -1 : 1);

  // Round a decimal string half-up to `places` digits, by string arithmetic.
  function roundText(text, places) {
    let s = String(text).trim();
    const negative = s.startsWith('-');
    if (negative || s.startsWith('+')) s = s.slice(1);
    let [whole, frac = ''] = s.split('.');
    whole = whole.replace(/^0+(?=\d)/, '') || '0';
    if (frac.length > places) {
      const up = frac.charCodeAt(places) >= 53; // digit >= 5
      let digits = (whole + frac.slice(0, places)).split('');
      if (up) {
        let i = digits.length - 1;
        while (i >= 0 && digits[i] === '9') { digits[i] = '0'; i -= 1; }
        if (i < 0) digits.unshift('1'); else digits[i] = String(Number(digits[i]) + 1);
      }
      digits = digits.join('');
      whole = digits.slice(0, digits.length - places) || '0';
      frac = digits.slice(digits.length - places);
    } else {
      frac = frac.padEnd(places, '0');
    }
    const zero = /^0*$/.test(whole + frac);
    return { negative: negative && !zero, whole, frac };
  }

  const group = (whole) => whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',');

  function fmtMoney(text, { places = 2, signed = false } = {}) {
    if (text === null || text === undefined || text === '') return '—';
    const r = roundText(text, places);
    const sign = r.negative ? '-' : signed && !isZero(r.whole + r.frac) ? '+' : '';
    return sign + group(r.whole) + (places ? `.${r.frac}` : '');
  }

  /** A decimal fraction as percent text, exactly (the decimal point moves two places; no float). */
  function percentOf(text) {
    if (text === null || text === undefined || text === '') return text;
    const m = /^(-?)(\d*)\.?(\d*)$/.exec(String(text));
    if (!m) return text;
    const digits = m[2] + (m[3] + '00').slice(0, 2);
    const rest = m[3].slice(2);
    return `${m[1]}${digits.replace(/^0+(?=\d)/, '')}${rest ? `.${rest}` : ''}`;
  }

  const pairs = (symbol) => String(symbol || '').split(',').join(' + '); // a bot's symbols, stored comma-joined

  const fmtQty = (text) => (text === null || text === undefined ? '—' : String(text).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, ''));

  // --- time ----------------------------------------------------------------------------------------------------

  function fmtTime(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  }

  function fmtAge(seconds) {
    const s = Math.max(0, Number(seconds));
    if (s < 90) return `${Math.round(s)} s`;
    if (s < 5400) return `${Math.round(s / 60)} min`;
    if (s < 172_800) return `${(s / 3600).toFixed(s < 36_000 ? 1 : 0)} h`;
    return `${Math.round(s / 86_400)} d`;
  }

  function timeframeSeconds(timeframe) {
    const m = /^(\d+)([smhdw])$/.exec(String(timeframe || '').trim());
    if (!m) return null;
    return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 }[m[2]];
  }

  // --- DOM helpers ---------------------------------------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function show(node, visible) { node.hidden = !visible; }

  function setMoney(node, text, opts) {
    node.textContent = fmtMoney(text, opts);
    node.dataset.value = text ?? '';
  }

  function toneClass(text) {
    const s = signOf(text ?? '0');
    return s > 0 ? 'up' : s < 0 ? 'down' : 'flat';
  }

  // Each cell carries its column's header as data-label, for the stacked table layout on phones.
  function labelCells(table) {
    const labels = [...table.querySelectorAll('thead th')].map((th) => th.textContent);
    for (const row of table.querySelectorAll('tbody tr:not(.empty)')) {
      [...row.children].forEach((cell, i) => cell.setAttribute('data-label', labels[i] || ''));
    }
  }

  function emptyRow(tbody, columns, message) {
    tbody.replaceChildren(el('tr', { class: 'empty' }, el('td', { colspan: String(columns), text: message })));
  }

  // --- API -----------------------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body, fallback) {
      const err = body && body.error;
      super(err && err.message ? err.message : fallback);
      this.status = status;
      this.code = err ? err.code : null;
      this.details = err && Array.isArray(err.details) ? err.details : [];
    }
  }

  function url(path, params = {}) {
    const query = new URLSearchParams();
    if (state.sessionId !== null) query.set('session_id', state.sessionId);
    for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined) query.set(k, v);
    const qs = query.toString();
    return qs ? `${path}?${qs}` : path;
  }

  async function api(path, { method = 'GET', headers = {}, body, auth = true } = {}) {
    const h = { Accept: 'application/json', ...headers };
    if (auth) h.Authorization = `Bearer ${state.token}`;
    const response = await fetch(path, { method, headers: h, body, cache: 'no-store', credentials: 'omit' });
    const text = await response.text();
    let data = null;
    try { data = text ? parseJson(text) : null; } catch { data = null; }
    if (!response.ok) {
      if (response.status === 401 && auth) signOut('The token was not accepted; sign in again.');
      throw new ApiError(response.status, data, `the server answered ${response.status}`);
    }
    return data;
  }

  function describe(error) {
    const parts = [error.message || String(error)];
    for (const d of error.details || []) {
      if (d && d.message) parts.push(d.field ? `${d.field}: ${d.message}` : d.message);
    }
    return parts.join(' — ');
  }

  // --- sign-in -------------------------------------------------------------------------------------------------

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    state.scope = null;
    if (state.timer) { clearInterval(state.timer); state.timer = null; }
    show($('#dashboard'), false);
    show($('#logout'), false);
    show($('#who'), false);
    show($('#tick-status'), false);
    show($('#session-picker-label'), false);
    show($('#login'), true);
    const error = $('#login-error');
    error.textContent = message || '';
    show(error, Boolean(message));
    $('#token-input').value = '';
    document.body.dataset.state = 'signed-out';
    $('#token-input').focus();
  }

  async function signIn(token) {
    state.token = token;
    document.body.dataset.state = 'loading';
    let me;
    try {
      me = await api('api/me');
    } catch (error) {
      if (error.status !== 401) signOut(`Could not reach the API: ${describe(error)}`);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    state.scope = me.scope;
    $('#who').textContent = `${me.name} · ${me.scope}`;
    show($('#who'), true);
    show($('#logout'), true);
    show($('#login'), false);
    show($('#change'), me.scope === 'write');
    show($('#dashboard'), true);
    await loadSessions();
    await refreshAll();
    if (!state.timer) {
      state.timer = setInterval(() => { if (!document.hidden) refreshAll(); }, REFRESH_MS);
    }
  }

  // --- sessions ------------------------------------------------------------------------------------------------

  async function loadSessions() {
    const data = await api('api/sessions?status=active');
    state.sessions = data.sessions || [];
    const stored = sessionStorage.getItem(SESSION_KEY);
    const chosen = state.sessions.find((s) => s.session_id === stored) || state.sessions[0] || null;
    state.session = chosen;
    state.sessionId = chosen ? chosen.session_id : null;
    const picker = $('#session-picker');
    picker.replaceChildren(...state.sessions.map((s) => el('option', {
      value: s.session_id,
      text: `#${s.session_id} ${s.strategy} · ${pairs(s.symbol)} ${s.timeframe}`,
    })));
    if (chosen) picker.value = chosen.session_id;
    show($('#session-picker-label'), state.sessions.length > 1);
    $('#session-label').textContent = chosen ? `· #${chosen.session_id} ${pairs(chosen.symbol)} ${chosen.timeframe}` : '';
  }

  function chooseSession(id) {
    sessionStorage.setItem(SESSION_KEY, id);
    state.session = state.sessions.find((s) => s.session_id === id) || null;
    state.sessionId = id;
    state.historyCursors = [null];
    const s = state.session;
    $('#session-label').textContent = s ? `· #${s.session_id} ${pairs(s.symbol)} ${s.timeframe}` : '';
    refreshAll();
  }

  // --- loaders -------------------------------------------------------------------------------------------------

  async function refreshAll() {
    document.body.dataset.state = 'loading';
    // The chart runs on the account's market time, which the balance tells: it waits for it.
    const results = await Promise.allSettled([
      loadBalance().then(loadChart), loadHistory(), loadPositions(), loadTrades(), loadHealth(), loadDeposits(),
      loadExposure(), loadAttribution(),
    ]);
    const failed = results.filter((r) => r.status === 'rejected').map((r) => describe(r.reason));
    const banner = $('#global-error');
    banner.textContent = failed.length ? [...new Set(failed)].join(' · ') : '';
    show(banner, failed.length > 0);
    state.refreshes += 1;
    document.body.dataset.refreshes = String(state.refreshes);
    $('#refreshed-at').textContent = new Date().toLocaleTimeString();
    document.body.dataset.state = state.token ? 'ready' : 'signed-out';
  }

  async function loadBalance() {
    const b = await api(url('api/balance'));
    state.currency = b.base_currency || '';
    for (const node of document.querySelectorAll('.currency')) node.textContent = state.currency;
    setMoney($('#balance-value'), b.current_balance);
    const change = $('#change-24h');
    change.dataset.value = b.balance_change_24h ?? '';
    change.className = `change ${toneClass(b.balance_change_24h)}`;
    if (b.balance_change_24h === null || b.balance_change_24h === undefined) {
      change.textContent = 'n/a';
    } else {
      const arrow = signOf(b.balance_change_24h) > 0 ? '▲ ' : signOf(b.balance_change_24h) < 0 ? '▼ ' : '';
      change.textContent = `${arrow}${fmtMoney(b.balance_change_24h, { signed: true })}%`;
    }
    change.title = 'Time-weighted: the change in value per unit over the last 24 market hours, so capital '
      + 'added or taken out does not count as performance';
    const flows = $('#flows-24h');
    flows.dataset.value = b.net_flows_24h ?? '';
    flows.textContent = b.balance_delta_24h === undefined ? '' : `Change ${fmtMoney(b.balance_delta_24h, { signed: true })} `
      + `= deposits/withdrawals ${fmtMoney(b.net_flows_24h, { signed: true })} `
      + `+ trading ${fmtMoney(b.pnl_24h, { signed: true })} ${state.currency}`;
    state.marketNow = b.market_time ? Date.parse(b.market_time) : Date.now();
    const reason = b.last_update_reason ? ` · ${b.last_update_reason}` : '';
    $('#last-update').textContent = b.last_updated ? `Updated ${fmtTime(b.last_updated)}${reason}` : '';

    const cur = (text) => `${fmtMoney(text)} ${state.currency}`;
    for (const [id, value] of [['#available-value', b.available_balance], ['#reserved-value', b.reserved_balance],
      ['#equity-value', b.equity ?? b.current_balance]]) {
      const node = $(id);
      node.textContent = value === null || value === undefined ? '—' : cur(value);
      node.dataset.value = value ?? '';
    }
    const unrealized = $('#unrealized');
    unrealized.textContent = b.unrealized_pnl !== undefined && b.unrealized_pnl !== null
      ? `incl. ${fmtMoney(b.unrealized_pnl, { signed: true })} unrealised` : '';
    unrealized.className = `small ${toneClass(b.unrealized_pnl)}`;
    const twr = $('#twr-value');
    twr.dataset.value = b.time_weighted_return ?? '';
    twr.textContent = b.time_weighted_return === null || b.time_weighted_return === undefined ? '—'
      : `${fmtMoney(percentOf(b.time_weighted_return), { signed: true })}%`;
    twr.title = 'Time-weighted return of the value per unit since the account began (flows excluded)';
    const drawdown = $('#drawdown');
    drawdown.dataset.value = b.drawdown ?? '';
    drawdown.textContent = Number(b.drawdown) > 0 ? `${fmtMoney(percentOf(b.drawdown))}% below the peak value per unit`
      : 'at the peak value per unit';

    const assets = Array.isArray(b.assets) ? b.assets.map((a) => [a.asset, a.quantity])
      : Object.entries(b.asset_balances || {});
    $('#assets').replaceChildren(...(assets.length ? assets.map(([asset, qty]) => el('li', {},
      el('span', { class: 'asset', text: asset }),
      el('span', { class: 'num', text: asset === state.currency ? fmtMoney(qty) : fmtQty(qty) }))) : [el('li', { class: 'muted', text: 'none' })]));
    renderBreakdown(b);
    renderExposure(b.exposure);
  }

  const fmtShare = (text) => (text === null || text === undefined ? '—' : `${fmtMoney(percentOf(text))}%`);

  // The asset breakdown: cash first, then each asset, valued by the server (chalicelib/valuation) at the last close.
  function renderBreakdown(b) {
    const tbody = $('#breakdown tbody');
    const rows = b.assets || [];
    if (!rows.length) emptyRow(tbody, 5, 'No assets.');
    else {
      tbody.replaceChildren(...rows.map((a) => el('tr', { 'data-asset': a.asset, title: a.priced_as },
        el('td', { class: 'asset', text: a.asset }),
        el('td', { class: 'num', 'data-value': a.quantity, text: a.asset === state.currency ? fmtMoney(a.quantity) : fmtQty(a.quantity) }),
        el('td', { class: 'num', 'data-value': a.price, text: fmtMoney(a.price) }),
        el('td', { class: 'num', 'data-value': a.value, text: fmtMoney(a.value) }),
        el('td', { class: 'num', 'data-value': a.share_of_equity ?? '', text: fmtShare(a.share_of_equity) }))));
    }
    labelCells($('#breakdown'));
    const marks = b.marks || [];
    $('#marks').replaceChildren(...marks.map((m) => el('li', { 'data-symbol': m.symbol, title: m.priced_as },
      `${m.symbol} ${fmtMoney(m.close)} ${state.currency} · candle ${fmtTime(m.candle_time)} · ${m.priced_as}`)));
  }

  // Gross and net exposure per asset and in total, as amounts and as a share of equity.
  function renderExposure(exposure) {
    const tbody = $('#exposure tbody');
    if (!exposure) { emptyRow(tbody, 5, '—'); return; }
    const lines = [...(exposure.assets || []), exposure.total];
    tbody.replaceChildren(...lines.map((e) => el('tr', { 'data-asset': e.asset, class: e.asset === 'total' ? 'total' : null },
      el('td', { class: 'asset', text: e.asset === 'total' ? 'Total' : e.asset }),
      el('td', { class: 'num', 'data-value': e.gross, text: fmtMoney(e.gross) }),
      el('td', { class: 'num', 'data-value': e.gross_share ?? '', text: fmtShare(e.gross_share) }),
      el('td', { class: 'num', 'data-value': e.net, text: fmtMoney(e.net, { signed: signOf(e.net) < 0 }) }),
      el('td', { class: 'num', 'data-value': e.net_share ?? '', text: fmtShare(e.net_share) }))));
    labelCells($('#exposure'));
  }

  // Exposure over market time: the newest points of GET /api/exposure (one per market time, after every pair).
  async function loadExposure() {
    const data = await api(url('api/exposure', { limit: EXPOSURE_POINTS }));
    const points = (data.history || []).filter((p) => p.gross_share !== null && p.gross_share !== undefined)
      .map((p) => ({ t: Date.parse(p.market_time), v: Number(percentOf(p.gross_share)) })).reverse();
    const end = data.market_time ? Date.parse(data.market_time) : (points.length ? points[points.length - 1].t : Date.now());
    state.exposureSeries = points.length ? { series: points, start: points[0].t, end: Math.max(end, points[points.length - 1].t) } : null;
    drawExposure();
    const note = $('#exposure-note');
    note.textContent = points.length
      ? `Gross exposure as a share of equity, ${points.length} market time${points.length === 1 ? '' : 's'}`
        + ` from ${fmtTime(data.history[data.history.length - 1].market_time)} to ${fmtTime(data.history[0].market_time)}`
        + (data.next_cursor ? ` (the newest ${points.length})` : '')
      : 'No exposure recorded yet (it is recorded with each candle the bot applies).';
  }

  // Attribution by strategy and by symbol (GET /api/performance); "—" and the server's reason when it refuses.
  async function loadAttribution() {
    const notes = [];
    await Promise.all([['strategy', '#attribution-strategy'], ['symbol', '#attribution-symbol']].map(async ([by, id], i) => {
      const table = $(id);
      const tbody = table.querySelector('tbody');
      let data;
      try {
        data = await api(url('api/performance', { by }));
      } catch (error) {
        if (!(error instanceof ApiError) || error.status === 401) throw error;
        tbody.replaceChildren(el('tr', { class: 'unavailable', 'data-status': String(error.status) },
          ...Array.from({ length: 8 }, () => el('td', { class: 'num', text: '—' }))));
        labelCells(table);
        notes[i] = `by ${by}: ${describe(error)}`;
        return;
      }
      const groups = data.groups || [];
      const rows = groups.map((g) => attributionRow(g, g.key));
      if (data.total && groups.length > 1) rows.push(attributionRow(data.total, 'Total', 'total'));
      if (!rows.length) emptyRow(tbody, 8, 'No closed trades in this period.');
      else tbody.replaceChildren(...rows);
      labelCells(table);
    }));
    const said = notes.filter(Boolean);
    $('#attribution-note').textContent = said.length ? `Attribution ${said.join('; ')}.` : '';
  }

  function attributionRow(g, key, cls) {
    const cell = (text, tone) => el('td', { class: `num ${tone ? toneClass(text) : ''}`.trim(), 'data-value': text ?? '', text: fmtMoney(text, { signed: tone }) });
    return el('tr', { 'data-key': key, class: cls || null },
      el('td', { class: 'asset', text: key ?? '—' }),
      el('td', { class: 'num', 'data-value': g.trades ?? '', text: g.trades === undefined || g.trades === null ? '—' : String(g.trades) }),
      el('td', { class: 'num', 'data-value': g.win_rate ?? '', text: fmtShare(g.win_rate) }),
      cell(g.net_pnl, true), cell(g.fees), cell(g.average_win), cell(g.average_loss),
      el('td', { class: 'num', 'data-value': g.contribution ?? '', text: fmtShare(g.contribution) }));
  }

  async function loadHealth() {
    const node = $('#tick-status');
    let report = null;
    try {
      const response = await fetch('api/health', { headers: { Authorization: `Bearer ${state.token}` }, cache: 'no-store', credentials: 'omit' });
      report = parseJson(await response.text());
    } catch {
      report = null;
    }
    show(node, true);
    if (!report) {
      node.textContent = 'health unknown';
      node.className = 'badge stale';
      return;
    }
    const age = report.last_tick_age_seconds;
    const frame = timeframeSeconds(state.session && state.session.timeframe);
    if (age === null || age === undefined) {
      node.textContent = 'no tick yet';
      node.className = 'badge stale';
      node.title = 'The scheduled tick has not run yet.';
      return;
    }
    const stale = frame !== null && Number(age) > 2 * frame;
    node.textContent = stale ? `stale: last tick ${fmtAge(age)} ago` : `last tick ${fmtAge(age)} ago`;
    node.className = `badge ${stale ? 'stale' : 'fresh'}`;
    node.dataset.stale = String(stale);
    node.title = `Last tick ${fmtTime(report.last_tick_at)}; stale when older than twice the timeframe`
      + (state.session ? ` (${state.session.timeframe})` : '') + `. Database ${report.database}.`;
  }

  async function loadHistory() {
    const cursor = state.historyCursors[state.historyCursors.length - 1];
    const data = await api(url('api/balance/history', { limit: HISTORY_PAGE, before: cursor }));
    state.historyNext = data.next_cursor;
    const tbody = $('#history tbody');
    const rows = data.entries || [];
    if (!rows.length) emptyRow(tbody, 6, 'No ledger entries.');
    else {
      tbody.replaceChildren(...rows.map((e) => el('tr', { 'data-id': e.id },
        el('td', { class: 'nowrap', text: fmtTime(e.market_time), title: `recorded ${fmtTime(e.timestamp)}` }),
        el('td', {}, el('span', { class: `kind kind-${e.kind}`, text: e.kind.replace(/_/g, ' ') })),
        el('td', { class: `num ${toneClass(e.amount)}`, 'data-value': e.amount, text: fmtMoney(e.amount, { signed: true }) }),
        el('td', { class: 'num', 'data-value': e.balance_after, text: fmtMoney(e.balance_after) }),
        el('td', { class: 'reason', text: e.reason || '' }),
        el('td', { text: e.updated_by + (e.updated_by_label ? ` (${e.updated_by_label})` : '') }))));
    }
    labelCells($('#history'));
    $('#history-newer').disabled = state.historyCursors.length <= 1;
    $('#history-older').disabled = !state.historyNext;
  }

  async function loadPositions() {
    const data = await api(url('api/positions'));
    const tbody = $('#positions tbody');
    const rows = data.positions || [];
    $('#last-close').textContent = data.last_close ? `· last close ${fmtMoney(data.last_close)} (${fmtTime(data.last_close_at)})` : '';
    if (!rows.length) { emptyRow(tbody, 8, 'No open positions.'); return; }
    tbody.replaceChildren(...rows.map((p) => el('tr', { 'data-id': p.id },
      el('td', { text: p.symbol }),
      el('td', { class: `side side-${p.side}`, text: p.side }),
      el('td', { class: 'num', text: fmtQty(p.quantity) }),
      el('td', { class: 'num', text: fmtMoney(p.entry_price) }),
      el('td', { class: 'num', 'data-value': p.last_close ?? '', text: fmtMoney(p.last_close) }),
      el('td', { class: 'num', text: fmtMoney(p.stop_loss) }),
      el('td', { class: 'num', text: fmtMoney(p.take_profit) }),
      el('td', { class: `num ${toneClass(p.unrealized_pnl)}`, 'data-value': p.unrealized_pnl ?? '', text: fmtMoney(p.unrealized_pnl, { signed: true }) }))));
    labelCells($('#positions'));
  }

  async function loadTrades() {
    const data = await api(url('api/trades', { limit: 10 }));
    const tbody = $('#trades tbody');
    const rows = data.trades || [];
    if (!rows.length) { emptyRow(tbody, 8, 'No closed trades yet.'); return; }
    tbody.replaceChildren(...rows.map((t) => el('tr', { 'data-id': t.id },
      el('td', { class: 'nowrap', text: fmtTime(t.exit_time) }),
      el('td', { text: t.symbol }),
      el('td', { class: `side side-${t.side}`, text: t.side }),
      el('td', { class: 'num', text: fmtQty(t.quantity) }),
      el('td', { class: 'num', text: fmtMoney(t.entry_price) }),
      el('td', { class: 'num', text: fmtMoney(t.exit_price) }),
      el('td', { class: `num ${toneClass(t.realized_pnl)}`, text: fmtMoney(t.realized_pnl, { signed: true }) }),
      el('td', { text: (t.exit_reason || '').replace(/_/g, ' ') }))));
    labelCells($('#trades'));
  }

  async function loadDeposits() {
    const data = await api('api/schedules');
    const tbody = $('#deposits tbody');
    const mine = state.session ? (s) => s.session_id === state.session.session_id : () => true;
    const rows = (data.schedules || []).filter((s) => s.status === 'active' && mine(s))
      .sort((a, b) => String(a.next_deposit_at).localeCompare(String(b.next_deposit_at)));
    if (!rows.length) { emptyRow(tbody, 5, 'No scheduled deposits (atb schedules add).'); return; }
    tbody.replaceChildren(...rows.map((s) => el('tr', { 'data-id': s.schedule_id },
      el('td', { class: 'nowrap', text: fmtTime(s.next_deposit_at) }),
      el('td', { class: 'num', text: fmtMoney(s.amount) }),
      el('td', { text: s.every }),
      el('td', { text: s.reason }),
      el('td', { text: s.created_by }))));
    labelCells($('#deposits'));
  }

  // --- chart ---------------------------------------------------------------------------------------------------

  async function loadChart() {
    const span = RANGES[state.range];
    const now = state.marketNow ?? Date.now(); // market time: a replayed account's chart spans the hours it replayed
    const since = span === null ? null : now - span;
    const entries = [];
    let cursor = null;
    let truncated = false;
    for (let page = 0; ; page += 1) {
      if (page >= CHART_MAX_PAGES) { truncated = true; break; }
      const data = await api(url('api/balance/history', { limit: CHART_PAGE, before: cursor }));
      const rows = data.entries || [];
      entries.push(...rows);
      cursor = data.next_cursor;
      if (!cursor || !rows.length) break;
      if (since !== null && Date.parse(rows[rows.length - 1].market_time) <= since) break; // have the row in force at `since`
    }
    const points = entries.slice().reverse().map((e) => ({ t: Date.parse(e.market_time), v: Number(e.balance_after),
      kind: e.kind }));
    let series = points;
    if (since !== null) {
      const before = points.filter((p) => p.t <= since);
      series = points.filter((p) => p.t > since);
      if (before.length) series.unshift({ t: since, v: before[before.length - 1].v });
    }
    if (series.length) series.push({ t: now, v: series[series.length - 1].v });
    state.chartSeries = { series, start: since ?? (series.length ? series[0].t : now), end: now };
    drawChart();
    const changes = points.filter((p) => since === null || p.t > since).length;
    $('#chart-note').textContent = (series.length ? `${changes} ledger change${changes === 1 ? '' : 's'} in range` : 'No ledger entries in this range.')
      + (truncated ? ` · showing the newest ${entries.length} entries only` : '');
    for (const b of document.querySelectorAll('[data-range]')) b.setAttribute('aria-pressed', String(b.dataset.range === state.range));
  }

  const SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function niceTicks(min, max, count) {
    const span = max - min || Math.abs(max) || 1;
    const step0 = span / count;
    const mag = 10 ** Math.floor(Math.log10(step0));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= step0) || mag * 10;
    const ticks = [];
    for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(v);
    return { ticks, step };
  }

  function axisLabel(value, step) {
    const digits = step >= 1 ? 0 : Math.min(8, Math.ceil(-Math.log10(step)));
    return value.toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function timeLabel(t, span) {
    const d = new Date(t);
    if (span <= 2 * 86_400_000) return d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
    return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  }

  function drawChart() { plot($('#chart'), state.chartSeries, {}); }

  function drawExposure() { plot($('#exposure-chart'), state.exposureSeries, { unit: '%', floor: 0 }); }

  // A step line of `data.series` ({t, v}) over [start, end]: `unit` follows the axis labels, `floor` bounds the axis.
  function plot(box, data, { unit = '', floor = null } = {}) {
    if (!data || !data.series.length) { box.replaceChildren(); return; }
    const width = Math.max(280, box.clientWidth || 600);
    const height = width < 500 ? 200 : 260;
    const pad = { l: width < 500 ? 54 : 72, r: 12, t: 12, b: 26 };
    const { series, start, end } = data;
    let lo = Math.min(...series.map((p) => p.v));
    let hi = Math.max(...series.map((p) => p.v));
    const margin = (hi - lo) * 0.08 || Math.abs(hi) * 0.01 || 1;
    lo -= margin; hi += margin;
    if (floor !== null) lo = Math.max(floor, lo);
    const { ticks, step } = niceTicks(lo, hi, 4);
    const x = (t) => pad.l + ((t - start) / Math.max(1, end - start)) * (width - pad.l - pad.r);
    const y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * (height - pad.t - pad.b);

    const root = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, class: 'chart-svg', role: 'presentation' });
    for (const v of ticks) {
      root.append(svg('line', { x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v), class: 'grid' }));
      root.append(svg('text', { x: pad.l - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, axisLabel(v, step) + unit));
    }
    const xTicks = width < 500 ? 3 : 5;
    for (let i = 0; i <= xTicks; i += 1) {
      const t = start + ((end - start) * i) / xTicks;
      const anchor = i === 0 ? 'start' : i === xTicks ? 'end' : 'middle';
      root.append(svg('text', { x: x(t), y: height - 6, class: 'axis', 'text-anchor': anchor }, timeLabel(t, end - start)));
    }
    // The account's timeline boundaries: strategy switches, resets, reopenings (one account, marked where they are).
    for (const p of series) {
      if (!BOUNDARIES[p.kind]) continue;
      const line = svg('line', { x1: x(p.t), x2: x(p.t), y1: pad.t, y2: height - pad.b, class: 'boundary',
        'data-kind': p.kind });
      line.append(svg('title', {}, BOUNDARIES[p.kind]));
      root.append(line);
    }
    // Step line: a balance holds until the next ledger change.
    let d = `M${x(series[0].t).toFixed(1)},${y(series[0].v).toFixed(1)}`;
    for (let i = 1; i < series.length; i += 1) {
      d += `H${x(series[i].t).toFixed(1)}V${y(series[i].v).toFixed(1)}`;
    }
    const base = height - pad.b;
    root.append(svg('path', { d: `${d}V${base}H${x(series[0].t).toFixed(1)}Z`, class: 'area' }));
    root.append(svg('path', { d, class: 'line' }));
    const last = series[series.length - 1];
    root.append(svg('circle', { cx: x(last.t), cy: y(last.v), r: 3.5, class: 'dot' }));
    box.replaceChildren(root);
  }

  // --- manual change -------------------------------------------------------------------------------------------

  function newKey() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function formMessage(error, ok) {
    const e = $('#change-error');
    const o = $('#change-ok');
    e.textContent = error || '';
    o.textContent = ok || '';
    show(e, Boolean(error));
    show(o, Boolean(ok));
  }

  async function submitChange(event) {
    event.preventDefault();
    const op = $('#change-op').value;
    const typed = $('#change-amount').value.trim();
    const reason = $('#change-reason').value.trim();
    if (!/^\d+(\.\d+)?$/.test(typed)) {
      const hint = op === 'set' ? 'Enter the new balance as a number, e.g. 5000 or 5000.50.'
        : `Enter a positive amount, e.g. 250 or 250.50${typed.startsWith('-') ? ` (to take money out, choose ${op === 'deposit' ? 'Withdraw' : 'Deposit'} instead)` : ''}.`;
      formMessage(`Invalid amount “${typed}”. ${hint}`);
      $('#change-amount').focus();
      return;
    }
    if (!reason) {
      formMessage('A reason is required; it is recorded in the ledger.');
      $('#change-reason').focus();
      return;
    }
    const number = typed.replace(/^0+(?=\d)/, ''); // JSON numbers have no leading zeros; the digits stay as typed
    const field = op === 'set' ? 'balance' : 'amount';
    const token = op === 'withdraw' ? `-${number}` : number;
    const body = `{"${field}": ${token}, "reason": ${JSON.stringify(reason)}}`;
    const requestUrl = url('api/balance');
    if (!state.pending || state.pending.body !== body || state.pending.url !== requestUrl) {
      state.pending = { body, url: requestUrl, key: newKey() };
    }
    const button = $('#change-submit');
    button.disabled = true;
    formMessage('');
    try {
      const result = await api(requestUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'Idempotency-Key': state.pending.key },
        body,
      });
      state.pending = null;
      const verb = { deposit: 'Deposited', withdraw: 'Withdrew', set: 'Set the balance to' }[op];
      formMessage('', `${verb} ${fmtMoney(number)} ${state.currency}. Balance now ${fmtMoney(result.current_balance)} ${state.currency}.`);
      $('#change-amount').value = '';
      $('#change-reason').value = '';
      state.historyCursors = [null];
      await refreshAll();
    } catch (error) {
      if (error instanceof ApiError) {
        state.pending = null; // the server answered: nothing to retry with this key
        formMessage(`Refused: ${describe(error)}`);
      } else {
        formMessage(`No answer from the server (${error.message}). Submit again to retry safely: the retry reuses the same idempotency key.`);
      }
    } finally {
      button.disabled = false;
    }
  }

  // --- wiring --------------------------------------------------------------------------------------------------

  function init() {
    const storedRange = sessionStorage.getItem(RANGE_KEY);
    if (storedRange && storedRange in RANGES) state.range = storedRange;
    $('#login-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const token = $('#token-input').value.trim();
      if (token) signIn(token);
    });
    $('#logout').addEventListener('click', () => signOut(''));
    $('#session-picker').addEventListener('change', (event) => chooseSession(event.target.value));
    $('#change-form').addEventListener('submit', submitChange);
    $('#history-older').addEventListener('click', () => {
      if (!state.historyNext) return;
      state.historyCursors.push(state.historyNext);
      loadHistory().catch((error) => { state.historyCursors.pop(); formMessage(describe(error)); });
    });
    $('#history-newer').addEventListener('click', () => {
      if (state.historyCursors.length <= 1) return;
      state.historyCursors.pop();
      loadHistory().catch(() => {});
    });
    for (const button of document.querySelectorAll('[data-range]')) {
      button.addEventListener('click', () => {
        state.range = button.dataset.range;
        sessionStorage.setItem(RANGE_KEY, state.range);
        loadChart().catch(() => {});
      });
    }
    let resizeTimer = null;
    window.addEventListener('resize', () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => { drawChart(); drawExposure(); }, 150);
    });
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) signIn(token); else signOut('');
  }

  init();
})();
