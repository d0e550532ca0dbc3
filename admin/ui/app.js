// protogate dashboard. Plain JavaScript, no framework, no build step.
//
// It polls GET api/v1/overview every 2 s and updates the page in place; the
// message rates and sparklines are computed here from counter deltas kept for
// the last 5 minutes. Every URL is relative, so the page works wherever the
// admin listener is mounted, and the browser sends the Basic credentials it
// already used for the page. Nothing is written with innerHTML: every value
// from the API goes in as text.
'use strict';

const POLL_MS = 2000;
const WINDOW_MS = 5 * 60 * 1000;
const TRACE_MAX_LINES = 2000;
const FAULT_MAX_CHARS = 200;
const CLIENT_LIMIT = 50;
const KICK_WAIT_MS = 30 * 1000;

const $ = (testid, root = document) => root.querySelector(`[data-testid="${testid}"]`);

// ---- small DOM helpers ----

// el creates an element. props: class, testid, text, title, on<event>, or
// any attribute; children are nodes or strings (added as text).
function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'testid') e.dataset.testid = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  e.append(...children);
  return e;
}

const STATES = ['ok', 'warn', 'bad', 'dim'];

// set updates a node's text, tooltip and state class (ok, warn, bad, dim)
// only when they change, so a hovered tooltip survives a poll.
function set(node, text, {title = '', state = ''} = {}) {
  text = String(text);
  if (node.textContent !== text) node.textContent = text;
  if (title) {
    if (node.title !== title) node.title = title;
  } else if (node.hasAttribute('title')) {
    node.removeAttribute('title');
  }
  for (const s of STATES) node.classList.toggle(s, s === state);
}

// row makes a table row whose cells have data-testid = their name.
function row(testid, names, numeric = []) {
  const tr = el('tr', {testid});
  tr.c = {};
  for (const name of names) {
    tr.c[name] = tr.appendChild(el('td', {testid: name, class: numeric.includes(name) ? 'num' : null}));
  }
  return tr;
}

// syncRows makes table's body show one row per item, in order, reusing the
// rows it already has (by data-testid) and removing the others.
function syncRows(table, items, key, build, update, emptyText) {
  const tbody = table.tBodies[0];
  const have = new Map([...tbody.rows].map((tr) => [tr.dataset.testid, tr]));
  const keep = new Set();
  let prev = null;
  const place = (tr) => {
    const next = prev ? prev.nextSibling : tbody.firstChild;
    if (tr !== next) tbody.insertBefore(tr, next);
    prev = tr;
    keep.add(tr);
  };
  for (const item of items) {
    const id = key(item);
    const tr = have.get(id) || build(id, item);
    update(tr, item);
    place(tr);
  }
  if (items.length === 0) {
    const id = `${table.dataset.testid}-empty`;
    const tr = have.get(id) || el('tr', {testid: id, class: 'empty'},
      el('td', {colspan: table.tHead.rows[0].cells.length}));
    set(tr.cells[0], emptyText);
    place(tr);
  }
  for (const tr of have.values()) if (!keep.has(tr)) tr.remove();
}

// ---- formatting ----

const intFmt = new Intl.NumberFormat('en-US');
const fmtInt = (n) => (n == null ? '–' : intFmt.format(n));

function fmtBytes(n) {
  if (n == null) return '–';
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024, i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

function fmtRate(r) {
  if (r == null) return '–';
  return r < 10 ? r.toFixed(1) : intFmt.format(Math.round(r));
}

function fmtSeconds(s) {
  if (s == null) return '–';
  if (s < 1e-3) return `${Math.round(s * 1e6)} µs`;
  if (s < 1) return `${(s * 1e3).toFixed(1)} ms`;
  return `${s.toFixed(2)} s`;
}

function fmtUptime(sec) {
  if (sec == null) return '–';
  sec = Math.floor(sec);
  const d = Math.floor(sec / 86400), h = Math.floor(sec / 3600) % 24;
  const m = Math.floor(sec / 60) % 60, s = sec % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

// API times are RFC 3339 UTC with milliseconds.
const fmtDateTime = (iso) => (iso ? iso.replace('T', ' ').replace(/(\.\d+)?Z$/, '') : '–');
const fmtClock = (iso) => (iso && iso.length >= 19 ? iso.slice(11, 23).replace(/Z$/, '') : String(iso ?? ''));
const truncate = (s, n) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

function fmtPeer(c) {
  if (!c.ip_address) return '–';
  const ip = c.ip_address.includes(':') ? `[${c.ip_address}]` : c.ip_address;
  return c.port ? `${ip}:${c.port}` : ip;
}

// ---- API ----

class APIError extends Error {
  constructor(status, code, message) {
    super(message ? `${code}: ${message}` : code);
    this.status = status;
    this.code = code;
  }
}

async function apiError(resp) {
  let code = `HTTP ${resp.status}`, message = resp.statusText;
  try {
    const body = await resp.json();
    if (body && body.code) ({code, message} = body);
  } catch { /* not JSON: keep the status */ }
  return new APIError(resp.status, code, message);
}

// apiURL resolves a relative API path against the page, without the user
// name and password that a page opened as http://key:secret@host/ has in its
// own URL: fetch refuses a URL with credentials, and the browser sends the
// ones it used for the page anyway.
function apiURL(path) {
  const u = new URL(path, document.baseURI);
  u.username = '';
  u.password = '';
  return u.href;
}

async function api(method, path) {
  const resp = await fetch(apiURL(path), {
    method,
    credentials: 'same-origin',
    cache: 'no-store',
    headers: {Accept: 'application/json'},
  });
  if (!resp.ok) throw await apiError(resp);
  return resp.status === 204 ? null : resp.json();
}

// Errors are kept by source, so that a poll that works again clears the poll
// error and leaves a failed kick's message in place.
const errors = new Map();

function showError(source, err) {
  errors.set(source, err instanceof Error ? err.message : String(err));
  renderErrors();
}

function clearError(source) {
  if (errors.delete(source)) renderErrors();
}

function renderErrors() {
  const box = $('error');
  box.replaceChildren(...[...errors].map(([source, msg]) => el('div', {text: `${source}: ${msg}`})));
  box.hidden = errors.size === 0;
}

// ---- rates ----

// Rate keeps the samples of one counter for the last 5 minutes.
class Rate {
  constructor() { this.samples = []; }

  add(t, v) {
    const last = this.samples.at(-1);
    if (last && v < last.v) this.samples = []; // the counter restarted
    // A poll right after another (after a reload) would make a rate over a
    // few milliseconds, all jitter: it replaces the last sample instead.
    if (last && this.samples.length > 1 && t - last.t < POLL_MS / 2) this.samples.pop();
    this.samples.push({t, v});
    while (this.samples.length > 2 && t - this.samples[0].t > WINDOW_MS) this.samples.shift();
  }

  // series returns the per-second rates between consecutive samples.
  series() {
    const out = [];
    for (let i = 1; i < this.samples.length; i++) {
      const a = this.samples[i - 1], b = this.samples[i];
      out.push(b.t > a.t ? ((b.v - a.v) * 1000) / (b.t - a.t) : 0);
    }
    return out;
  }

  current() { return this.series().at(-1) ?? null; }
}

const rates = new Map(); // listener name, or '' for the totals -> Rate

function rateOf(name, t, v) {
  let r = rates.get(name);
  if (!r) rates.set(name, (r = new Rate()));
  r.add(t, v);
  return r;
}

const SVG = 'http://www.w3.org/2000/svg'; // a namespace name, never fetched
const SPARK_W = 120, SPARK_H = 20, SPARK_POINTS = WINDOW_MS / POLL_MS;

// spark draws the rates as a polyline in an inline SVG, newest on the right.
function spark(cell, series) {
  let svg = cell.firstElementChild;
  if (!svg) {
    svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('width', SPARK_W);
    svg.setAttribute('height', SPARK_H);
    svg.setAttribute('viewBox', `0 0 ${SPARK_W} ${SPARK_H}`);
    svg.dataset.testid = 'spark';
    const base = document.createElementNS(SVG, 'line');
    for (const [k, v] of Object.entries({x1: 0, y1: SPARK_H - 0.5, x2: SPARK_W, y2: SPARK_H - 0.5, stroke: '#d8dee4'})) base.setAttribute(k, v);
    svg.append(base);
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('fill', 'none');
    line.setAttribute('stroke', 'currentColor');
    line.setAttribute('stroke-width', '1.5');
    svg.append(line);
    cell.append(svg);
  }
  const max = Math.max(1, ...series);
  const step = SPARK_W / SPARK_POINTS;
  const x0 = SPARK_W - (series.length - 1) * step;
  const points = series.map((r, i) =>
    `${(x0 + i * step).toFixed(1)},${(SPARK_H - 1 - (r / max) * (SPARK_H - 2)).toFixed(1)}`);
  svg.lastElementChild.setAttribute('points', points.join(' '));
  cell.title = series.length ? `peak ${fmtRate(Math.max(...series))} msgs/s in the last 5 min` : '';
}

// ---- overview ----

function renderStatus(st, totals, now) {
  set($('node'), st.node ?? '–');
  set($('version'), st.version ?? '');
  set($('footer-version'), st.version ? `protogate ${st.version}` : '');
  set($('uptime'), fmtUptime(st.uptime_seconds), {title: st.started_at ? `started ${fmtDateTime(st.started_at)} UTC` : ''});
  set($('connections'), fmtInt(totals?.connections ?? st.connections),
    {title: st.clients != null ? `${fmtInt(st.clients)} authenticated clients` : ''});
  const total = totals ? rateOf('', now, (totals.recv_msg ?? 0) + (totals.send_msg ?? 0)).current() : null;
  set($('total-rate'), fmtRate(total), {title: totals ? `in ${fmtInt(totals.recv_msg)} · out ${fmtInt(totals.send_msg)} · dropped ${fmtInt(totals.dropped)} (totals)` : ''});
  const reasons = st.reasons ?? [];
  set($('ready'), st.ready ? 'READY' : 'NOT READY', {state: st.ready ? 'ok' : 'bad'});
  set($('reasons'), reasons.join('; '), {state: st.ready ? '' : 'bad'});
  $('status').classList.toggle('not-ready', !st.ready);
  document.title = `${st.ready ? '' : 'NOT READY · '}protogate ${st.node ?? ''}`.trim();
}

const REFUSED = ['max_connections', 'max_conn_rate', 'access_denied', 'handshake_failed', 'proxy_protocol'];

function renderListeners(list, now) {
  const names = ['name', 'type', 'address', 'handler', 'conns', 'accepted', 'refused', 'rate', 'spark'];
  syncRows($('listeners'), list, (l) => `listener-${l.name}`,
    (id) => row(id, names, ['conns', 'accepted', 'refused', 'rate']),
    (tr, l) => {
      const c = tr.c;
      set(c.name, l.running === false ? `${l.name} (stopped)` : l.name, {state: l.running === false ? 'bad' : ''});
      set(c.type, l.type);
      set(c.address, l.address || l.bind || '–', {title: l.bind ? `bind ${l.bind}` : ''});
      set(c.handler, l.handler ?? '–');
      const full = l.max_connections > 0 && l.current_connections >= 0.9 * l.max_connections;
      set(c.conns, `${fmtInt(l.current_connections)} / ${l.max_connections > 0 ? fmtInt(l.max_connections) : '∞'}`,
        {state: full ? 'warn' : ''});
      set(c.accepted, fmtInt(l.accepted));
      const refused = l.refused ?? {};
      const keys = [...REFUSED, ...Object.keys(refused).filter((k) => !REFUSED.includes(k))];
      const sum = keys.reduce((s, k) => s + (refused[k] ?? 0), 0);
      const lines = keys.map((k) => `${k}: ${fmtInt(refused[k] ?? 0)}`);
      if (l.datagrams_dropped) lines.push(`datagrams dropped: ${fmtInt(l.datagrams_dropped)}`);
      set(c.refused, fmtInt(sum), {title: lines.join('\n'), state: sum ? 'warn' : ''});
      const r = rateOf(l.name, now, (l.recv_msg ?? 0) + (l.send_msg ?? 0));
      set(c.rate, fmtRate(r.current()), {
        title: `received ${fmtInt(l.recv_msg)} msgs, ${fmtBytes(l.recv_oct)}; sent ${fmtInt(l.send_msg)} msgs, ${fmtBytes(l.send_oct)}`,
      });
      spark(c.spark, r.series());
    }, 'no listeners');
  const live = new Set(list.map((l) => l.name));
  for (const name of rates.keys()) if (name && !live.has(name)) rates.delete(name);
}

const reloading = new Set();

function renderHandlers(list) {
  const names = ['name', 'backend', 'state', 'module', 'instances', 'faults', 'breaker', 'last-fault', 'callbacks', 'p99', 'actions'];
  syncRows($('handlers'), list, (h) => `handler-${h.name}`,
    (id, h) => {
      const tr = row(id, names, ['instances', 'faults', 'callbacks', 'p99']);
      tr.c.state.append(el('span'), el('span', {class: 'reason', testid: 'reason'}));
      tr.c.actions.append(el('button', {type: 'button', testid: `reload-${h.name}`, text: 'Reload', onclick: () => reload(h.name)}));
      return tr;
    },
    (tr, h) => {
      const c = tr.c, g = h.grpc, w = h.wasm, cb = h.callbacks ?? {};
      set(c.name, h.name);
      set(c.backend, h.backend);
      let state = h.ready ? 'ready' : 'not ready';
      let tone = h.ready ? 'ok' : 'bad';
      if (g) {
        state = g.state;
        if (g.state !== 'READY') tone = g.state === 'TRANSIENT_FAILURE' || g.state === 'SHUTDOWN' ? 'bad' : 'warn';
        if (!h.ready) tone = 'bad';
      }
      const [st, reason] = c.state.children;
      set(st, state, {state: tone});
      set(reason, h.ready ? '' : truncate(h.reason ?? '', FAULT_MAX_CHARS), {state: 'bad'});
      c.state.title = [g && `${g.address} (${g.service})`, h.reason].filter(Boolean).join('\n');
      if (w) {
        const sha = (w.sha256 ?? '').slice(0, 12);
        set(c.module, `v${w.version} ${sha}`, {title: `${w.module}\nsha256 ${w.sha256}\n${w.versions ?? 1} version(s) loaded`});
        set(c.instances, fmtInt(w.instances));
        set(c.faults, fmtInt(w.faults), {state: w.faults ? 'warn' : ''});
        set(c.breaker, w.breaker, {state: w.breaker === 'open' ? 'bad' : ''});
        const fault = [w.last_fault, w.last_error && `error: ${w.last_error}`].filter(Boolean).join(' · ');
        set(c['last-fault'], fault ? truncate(fault, FAULT_MAX_CHARS) : '', {title: fault, state: 'bad'});
      } else {
        for (const k of ['module', 'instances', 'faults', 'breaker', 'last-fault']) set(c[k], '–', {state: 'dim'});
      }
      set(c.callbacks, `${fmtInt(cb.total)} / ${fmtInt(cb.failed)}`, {
        title: `timeouts ${fmtInt(cb.timeouts)} · panics ${fmtInt(cb.panics)}`,
        state: cb.failed || cb.timeouts || cb.panics ? 'warn' : '',
      });
      const lat = cb.latency_seconds ?? {};
      set(c.p99, fmtSeconds(lat.p99), {title: `p50 ${fmtSeconds(lat.p50)} · p90 ${fmtSeconds(lat.p90)} · p99 ${fmtSeconds(lat.p99)}`});
      const btn = c.actions.firstElementChild;
      btn.disabled = !w || reloading.has(h.name);
      btn.title = w ? `load ${w.module} again` : 'no wasm module to reload';
    }, 'no handlers');
}

async function reload(name) {
  const out = $('reload-result');
  reloading.add(name);
  const btn = $(`reload-${name}`);
  if (btn) btn.disabled = true;
  try {
    const r = await api('POST', `api/v1/handlers/${encodeURIComponent(name)}/reload`);
    set(out, `${name}: ${r.result}, version ${r.version}, sha256 ${(r.sha256 ?? '').slice(0, 12)}`, {state: 'ok'});
    clearError('reload');
  } catch (err) {
    set(out, `${name}: reload failed: ${err.message}`, {state: 'bad'});
    showError('reload', err);
  } finally {
    out.hidden = false;
    reloading.delete(name);
    if (btn) btn.disabled = false;
    pollNow();
  }
}

let pollTimer = 0;

async function poll() {
  clearTimeout(pollTimer);
  try {
    const ov = await api('GET', 'api/v1/overview');
    const now = Date.now();
    renderStatus(ov.status ?? {}, ov.totals, now);
    renderListeners(ov.listeners ?? [], now);
    renderHandlers(ov.handlers ?? []);
    set($('updated'), `updated ${new Date(now).toLocaleTimeString()}`);
    clearError('overview');
  } catch (err) {
    set($('updated'), `stale since ${new Date().toLocaleTimeString()}`, {state: 'bad'});
    showError('overview', err);
  } finally {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(poll, POLL_MS);
  }
}

function pollNow() {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(poll, 0);
}

// ---- clients ----

let lastQuery = '';
let detailConn = '';

function clientLabel(c) {
  return c.clientid || '(not authenticated)';
}

async function searchClients(e) {
  e?.preventDefault();
  const q = new URLSearchParams({limit: CLIENT_LIMIT});
  const text = $('client-search-text').value.trim();
  if (text) q.set($('client-search-field').value, text);
  lastQuery = q.toString();
  await loadClients();
}

async function loadClients() {
  try {
    const res = await api('GET', `api/v1/clients?${lastQuery}`);
    renderClients(res.data ?? [], res.meta ?? {});
    clearError('clients');
  } catch (err) {
    showError('clients', err);
  }
}

function renderClients(list, meta) {
  const names = ['client', 'username', 'peer', 'listener', 'state', 'created', 'in', 'out', 'actions'];
  syncRows($('clients'), list, (c) => `client-row-${c.conn}`,
    (id, c) => {
      const tr = row(id, names, ['in', 'out']);
      tr.classList.add('clickable');
      tr.tabIndex = 0;
      tr.addEventListener('click', () => openDetail(tr.client));
      tr.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' && ev.target === tr) openDetail(tr.client); });
      tr.c.client.append(el('span', {class: 'cid'}), ' ', el('span', {class: 'conn dim'}));
      tr.c.actions.append(el('button', {
        type: 'button', class: 'danger', testid: `kick-${c.conn}`, text: 'Kick',
        onclick: (ev) => { ev.stopPropagation(); kick(tr.client); },
      }));
      return tr;
    },
    (tr, c) => {
      tr.client = c;
      const [cid, conn] = tr.c.client.children;
      set(cid, clientLabel(c), {state: c.clientid ? '' : 'dim'});
      set(conn, c.conn);
      set(tr.c.username, c.username || '–', {state: c.username ? '' : 'dim'});
      set(tr.c.peer, fmtPeer(c));
      set(tr.c.listener, c.listener ?? '–', {title: c.handler ? `handler ${c.handler} (${c.backend})` : ''});
      const st = c.conn_state;
      set(tr.c.state, st, {state: st === 'connected' ? 'ok' : st === 'connecting' ? 'warn' : 'dim'});
      set(tr.c.created, fmtDateTime(c.created_at));
      set(tr.c.in, fmtBytes(c.recv_oct), {title: `${fmtInt(c.recv_oct)} bytes, ${fmtInt(c.recv_msg)} msgs`});
      set(tr.c.out, fmtBytes(c.send_oct), {title: `${fmtInt(c.send_oct)} bytes, ${fmtInt(c.send_msg)} msgs`});
      tr.classList.toggle('selected', c.conn === detailConn);
    }, 'no clients');
  let m = `${list.length} shown`;
  if (meta.count != null) m += ` of ${fmtInt(meta.count)}`;
  if (meta.hasnext) m += '; more match: refine the search';
  set($('clients-meta'), m);
}

async function kick(c) {
  if (!confirm(`Kick ${clientLabel(c)} (${c.conn}, ${fmtPeer(c)})?`)) return;
  let kicked = false;
  try {
    // The connection handle names exactly this connection, also when its
    // client id was taken over by a newer one.
    await api('DELETE', `api/v1/clients/${encodeURIComponent(c.conn)}`);
    kicked = true;
    clearError('kick');
  } catch (err) {
    showError('kick', err);
  }
  if (detailConn === c.conn) closeDetail();
  await loadClients();
  // A kicked connection is listed, disconnected, until its handler has
  // seen OnSocketClosed: load the list again until it is gone, sooner
  // first, so that the row does not stay behind.
  const end = Date.now() + KICK_WAIT_MS;
  for (let delay = 100; kicked && $(`client-row-${c.conn}`) && Date.now() < end; delay = Math.min(2 * delay, POLL_MS)) {
    await new Promise((resolve) => setTimeout(resolve, delay));
    await loadClients();
  }
}

async function openDetail(c) {
  detailConn = c.conn;
  for (const tr of $('clients').tBodies[0].rows) tr.classList.toggle('selected', tr.client?.conn === c.conn);
  const panel = $('client-detail');
  panel.client = c;
  set($('client-detail-title'), `${clientLabel(c)} · ${c.conn}`);
  $('client-fields').replaceChildren(...Object.entries(c).flatMap(([k, v]) => [
    el('dt', {text: k}),
    el('dd', {testid: `field-${k}`, text: v == null || v === '' ? '–' : String(v)}),
  ]));
  const subs = $('client-subscriptions');
  syncRows(subs, [], () => '', null, null, 'loading…');
  panel.hidden = false;
  try {
    const list = await api('GET', `api/v1/clients/${encodeURIComponent(c.conn)}/subscriptions`);
    if (detailConn !== c.conn) return;
    syncRows(subs, list ?? [], (s) => `subscription-${s.topic}`,
      (id) => row(id, ['topic', 'qos', 'nl', 'rap', 'rh'], ['qos', 'nl', 'rap', 'rh']),
      (tr, s) => { for (const k of ['topic', 'qos', 'nl', 'rap', 'rh']) set(tr.c[k], s[k] ?? '–'); },
      'no subscriptions');
    clearError('subscriptions');
  } catch (err) {
    syncRows(subs, [], () => '', null, null, 'unavailable');
    showError('subscriptions', err);
  }
}

function closeDetail() {
  detailConn = '';
  $('client-detail').hidden = true;
  for (const tr of $('clients').tBodies[0].rows) tr.classList.remove('selected');
}

// ---- trace ----

let trace = null; // {ctrl: AbortController, conn}

function setTraceState(text, state = '') {
  set($('trace-state'), text, {state});
  $('trace-stop').disabled = !trace;
}

function stopTrace() {
  if (!trace) return;
  trace.ctrl.abort();
  trace = null;
  setTraceState('stopped', 'dim');
}

// startTrace streams the JSON lines of GET api/v1/trace with fetch, which
// sends the page's credentials (EventSource cannot be relied on to), until
// the stream ends or Stop aborts it.
async function startTrace(c) {
  stopTrace();
  const ctrl = new AbortController();
  trace = {ctrl, conn: c.conn};
  const section = $('trace');
  section.hidden = false;
  set($('trace-target'), `${clientLabel(c)} · ${c.conn}`);
  setTraceState('connecting…');
  section.scrollIntoView({block: 'nearest'});
  let last = null;
  try {
    const q = new URLSearchParams({conn: c.conn, format: 'jsonl', payload: 32});
    const resp = await fetch(apiURL(`api/v1/trace?${q}`), {
      credentials: 'same-origin',
      cache: 'no-store',
      headers: {Accept: 'application/x-ndjson'},
      signal: ctrl.signal,
    });
    if (!resp.ok) throw await apiError(resp);
    setTraceState('streaming', 'ok');
    clearError('trace');
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += value;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) appendTrace((last = JSON.parse(line)));
      }
    }
    if (buf.trim()) appendTrace((last = JSON.parse(buf)));
    if (trace?.ctrl === ctrl) {
      trace = null;
      setTraceState(last?.kind === 'end' ? 'ended: the connection closed' : 'ended', 'dim');
    }
  } catch (err) {
    if (ctrl.signal.aborted) return; // Stop, or another trace replaced this one
    if (trace?.ctrl === ctrl) trace = null;
    setTraceState('failed', 'bad');
    showError('trace', err);
  }
}

function hexPayload(hex) {
  return hex.replace(/(..)(?!$)/g, '$1 ');
}

function appendTrace(ev) {
  const log = $('trace-log');
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 4;
  const detail = [ev.topic && `topic ${ev.topic}`, ev.payload && hexPayload(ev.payload), ev.error]
    .filter(Boolean).join(' · ');
  const failed = ev.error || (ev.code && ev.code !== 'SUCCESS');
  log.append(el('div', {testid: 'trace-line', class: `ev ${ev.kind ?? ''}${failed ? ' bad' : ''}`, title: ev.time},
    el('span', {text: fmtClock(ev.time)}),
    el('span', {text: ev.kind ?? ''}),
    el('span', {text: ev.name ?? ''}),
    el('span', {class: 'num', text: ev.size != null ? fmtInt(ev.size) : ''}),
    el('span', {text: ev.code ?? ''}),
    el('span', {class: 'num', text: ev.duration_us != null ? fmtInt(ev.duration_us) : ''}),
    el('span', {class: 'detail', text: detail}),
  ));
  const lines = log.querySelectorAll('[data-testid="trace-line"]');
  for (let i = 0; i < lines.length - TRACE_MAX_LINES; i++) lines[i].remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
}

// ---- start ----

$('client-search').addEventListener('submit', searchClients);
$('client-detail-close').addEventListener('click', closeDetail);
$('trace-start').addEventListener('click', () => startTrace($('client-detail').client));
$('trace-stop').addEventListener('click', stopTrace);
$('trace-clear').addEventListener('click', () => {
  for (const line of $('trace-log').querySelectorAll('[data-testid="trace-line"]')) line.remove();
});
poll();
searchClients();
