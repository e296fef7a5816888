// Postwire's web page: the queue by destination, a searchable message list, a message page with its
// history and the operator actions, and two charts over the last hour. Plain browser JavaScript,
// no framework and no build step; it talks only to the JSON API under /api/v1 (src/api/v1.ts), the
// same one `postwire queue` uses. Every text from the server is put in the page with textContent,
// never as HTML. When the server asks for a token (401), the page asks the operator once and keeps
// it in sessionStorage (this tab only), sending it as `Authorization: Bearer …`.

const API = '/api/v1';
const TOKEN_KEY = 'postwire.adminToken';
const SVG_NS = 'http://www.w3.org/2000/svg';
const STATES = ['queued', 'deferred', 'held', 'ambiguous', 'delivered', 'bounced', 'expired', 'deleted'];
const PENDING = ['queued', 'deferred', 'held', 'ambiguous'];
const ACTIONS = [
  { action: 'retry', label: 'Retry now', verb: 'retry', reason: 'none' },
  { action: 'hold', label: 'Hold', verb: 'hold', reason: 'optional' },
  { action: 'release', label: 'Release', verb: 'release', reason: 'none' },
  { action: 'delete', label: 'Delete', verb: 'delete', reason: 'optional' },
  { action: 'bounce', label: 'Bounce', verb: 'bounce (a DSN goes to the sender)', reason: 'required' },
];
const REFRESH_MS = { overview: 5000, message: 2000 };

// ---------------------------------------------------------------- DOM helpers

/** An element with attributes (class, data-*, …; `on*` functions become listeners) and children. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** The same, in the SVG namespace (charts). */
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

function stateBadge(state, count) {
  return h('span', { class: `badge state-${state}`, 'data-state': state }, count === undefined ? state : `${state} ${count}`);
}

function setStatus(text, kind = '') {
  const el = document.getElementById('status');
  el.textContent = text;
  el.className = kind;
}

// ---------------------------------------------------------------- time

function age(iso, now = Date.now()) {
  if (!iso) return '';
  const secs = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (secs < 60) return `${secs} s`;
  const mins = Math.floor(secs / 60);
  if (mins < 60) return `${mins} min`;
  const hours = Math.floor(mins / 60);
  if (hours < 48) return `${hours} h ${mins % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return `${d.toLocaleString(undefined, { hour12: false })}`;
}

/** "in 3 min" / "3 min ago" for a time that may be ahead. */
function relative(iso) {
  if (!iso) return '';
  const ms = Date.parse(iso) - Date.now();
  return ms > 0 ? `in ${age(new Date(Date.now() - ms).toISOString())}` : `${age(iso)} ago`;
}

function timeCell(iso, rel = relative) {
  return iso ? h('time', { datetime: iso, title: when(iso) }, rel(iso)) : '';
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let tokenAsked;

/** Show the token form once; resolves when the operator has entered a token. */
function askToken(message) {
  tokenAsked ??= new Promise((resolve) => {
    const form = document.getElementById('token-form');
    const input = document.getElementById('token-input');
    document.getElementById('token-error').textContent = message ?? '';
    form.hidden = false;
    input.focus();
    form.addEventListener('submit', function onSubmit(event) {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      input.value = '';
      form.hidden = true;
      form.removeEventListener('submit', onSubmit);
      tokenAsked = undefined;
      resolve();
    });
  });
  return tokenAsked;
}

async function api(path, { method = 'GET', body } = {}) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await res.json().catch(() => undefined);
  if (res.status === 401) {
    const hadToken = Boolean(token);
    sessionStorage.removeItem(TOKEN_KEY);
    await askToken(hadToken ? 'That token was refused.' : (data?.error?.message ?? ''));
    return api(path, { method, body });
  }
  if (!res.ok) throw new ApiError(res.status, data?.error?.code ?? `HTTP_${res.status}`, data?.error?.message ?? res.statusText);
  return data;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, String(v));
  const text = q.toString();
  return text ? `?${text}` : '';
}

function errorBox(err) {
  const text = err instanceof ApiError ? `${err.code}: ${err.message}` : String(err?.message ?? err);
  return h('p', { class: 'error', role: 'alert' }, text);
}

// ---------------------------------------------------------------- routing

let refreshTimer;
let renderSeq = 0;

function route() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, search = ''] = hash.split('?');
  const params = Object.fromEntries(new URLSearchParams(search));
  const message = /^\/messages\/([^/]+)$/.exec(path);
  if (message) return { name: 'message', id: decodeURIComponent(message[1]), params };
  if (path === '/messages') return { name: 'messages', params };
  return { name: 'overview', params };
}

async function render() {
  clearTimeout(refreshTimer);
  const seq = ++renderSeq;
  const r = route();
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('active', a.dataset.nav === (r.name === 'overview' ? 'overview' : 'messages'));
  const view = document.getElementById('view');
  const views = { overview: overviewView, messages: messagesView, message: messageView };
  try {
    await views[r.name](view, r, () => seq === renderSeq);
    if (seq === renderSeq) setStatus(`updated ${new Date().toLocaleTimeString(undefined, { hour12: false })}`);
  } catch (err) {
    if (seq !== renderSeq) return;
    setStatus('the server did not answer', 'error');
    view.replaceChildren(h('h1', {}, 'Postwire'), errorBox(err));
  }
  if (seq === renderSeq && REFRESH_MS[r.name]) refreshTimer = setTimeout(() => void refresh(seq), REFRESH_MS[r.name]);
}

/** Re-render in place, unless the operator is in the middle of something (a confirmation, a form). */
async function refresh(seq) {
  if (seq !== renderSeq) return;
  const busy = document.querySelector('.confirm:not([hidden])') || document.hidden;
  if (busy) {
    refreshTimer = setTimeout(() => void refresh(seq), 1000);
    return;
  }
  await render();
}

// ---------------------------------------------------------------- overview: states, charts, destinations

async function overviewView(view, _r, current) {
  const [overview, series] = await Promise.all([api('/overview'), api('/timeseries')]);
  if (!current()) return;
  const pending = PENDING.reduce((n, st) => n + (overview.states[st] ?? 0), 0);
  view.replaceChildren(
    h('h1', {}, 'Queue'),
    h('section', { class: 'summary', 'aria-label': 'recipients per state' },
      h('div', { class: 'card' }, h('span', { class: 'label' }, 'pending'), h('span', { class: 'value', id: 'pending-count' }, String(pending))),
      h('div', { class: 'card' }, h('span', { class: 'label' }, 'oldest pending'), h('span', { class: 'value', id: 'oldest-age' }, overview.oldestReceivedAt ? age(overview.oldestReceivedAt) : '–')),
      STATES.filter((st) => overview.states[st]).map((st) =>
        h('a', { class: `card state-${st}`, href: `#/messages${query({ state: st })}`, 'data-state': st },
          h('span', { class: 'label' }, st), h('span', { class: 'value' }, String(overview.states[st])))),
    ),
    h('section', { class: 'charts' },
      h('figure', { id: 'chart-depth' }, h('figcaption', {}, 'Queue depth (recipients not yet final), last hour'), depthChart(series.minutes)),
      h('figure', { id: 'chart-outcomes' }, h('figcaption', {}, 'Delivered, deferred and bounced per minute, last hour'), outcomesChart(series.minutes),
        h('div', { class: 'legend' }, ['delivered', 'deferred', 'bounced'].map((k) => h('span', { class: `key key-${k}` }, k)))),
    ),
    h('h2', {}, 'By destination'),
    destinationsTable(overview.destinations),
  );
}

function destinationsTable(rows) {
  if (rows.length === 0) return h('p', { class: 'empty' }, 'The queue is empty.');
  const cols = ['queued', 'deferred', 'held', 'ambiguous', 'delivered', 'bounced', 'expired'];
  return h('table', { id: 'destinations', class: 'grid' },
    h('thead', {}, h('tr', {},
      h('th', {}, 'Destination'), cols.map((c) => h('th', { class: 'num' }, c)), h('th', {}, 'Oldest'), h('th', {}, 'Last error'), h('th', { class: 'num', title: 'recipients delivered per minute, last 10 minutes' }, 'Delivered/min'))),
    h('tbody', {}, rows.map((d) => h('tr', { 'data-destination': d.destination },
      h('td', {}, d.destination === '(other)' ? d.destination : h('a', { href: `#/messages${query({ domain: d.destination })}` }, d.destination)),
      cols.map((c) => h('td', { class: `num${d.states[c] ? ` has-${c}` : ''}`, 'data-col': c }, d.states[c] ? String(d.states[c]) : '')),
      h('td', {}, timeCell(d.oldestReceivedAt, age)),
      h('td', { class: 'reply' }, d.lastError ? [h('code', {}, d.lastError.reply), ' ', h('small', {}, timeCell(d.lastError.at))] : ''),
      h('td', { class: 'num' }, d.deliveredPerMinute ? String(d.deliveredPerMinute) : '0'),
    ))),
  );
}

// ---------------------------------------------------------------- charts (inline SVG)

const CHART = { w: 640, h: 170, left: 40, right: 8, top: 10, bottom: 22 };
const HOUR_MS = 60 * 60 * 1000;

/** The hour that ends with the newest minute: 60 slots; x(iso) is where a minute's slot starts. */
function frame(minutes) {
  const last = minutes.length ? Date.parse(minutes[minutes.length - 1].at) : Math.floor(Date.now() / 60_000) * 60_000;
  const end = last + 60_000;
  const start = end - HOUR_MS;
  const plotW = CHART.w - CHART.left - CHART.right;
  const slot = plotW / 60;
  const x = (iso) => CHART.left + ((Date.parse(iso) - start) / HOUR_MS) * plotW;
  return { x, slot, start, end, plotW, plotH: CHART.h - CHART.top - CHART.bottom };
}

function niceMax(v) {
  if (v <= 4) return 4;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function axes(max, f) {
  const y = (v) => CHART.top + f.plotH - (v / max) * f.plotH;
  const label = (t) => new Date(t).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', hour12: false });
  return {
    y,
    nodes: [
      [0, max / 2, max].map((v) => [
        s('line', { class: 'grid', x1: CHART.left, x2: CHART.w - CHART.right, y1: y(v), y2: y(v) }),
        s('text', { class: 'tick', x: CHART.left - 4, y: y(v) + 4, 'text-anchor': 'end' }, String(Math.round(v * 10) / 10)),
      ]),
      [f.start, f.start + (f.end - f.start) / 2, f.end].map((t, i) =>
        s('text', { class: 'tick', x: CHART.left + (i / 2) * f.plotW, y: CHART.h - 6, 'text-anchor': ['start', 'middle', 'end'][i] }, label(t))),
    ],
  };
}

function svgFrame(label, ...children) {
  return s('svg', { viewBox: `0 0 ${CHART.w} ${CHART.h}`, role: 'img', 'aria-label': label }, ...children);
}

function depthChart(minutes) {
  const f = frame(minutes);
  const max = niceMax(Math.max(0, ...minutes.map((m) => m.queueDepth)));
  const a = axes(max, f);
  const pts = minutes.map((m) => [f.x(m.at) + f.slot / 2, a.y(m.queueDepth)]);
  const line = pts.map(([px, py], i) => `${i ? 'L' : 'M'}${px.toFixed(1)},${py.toFixed(1)}`).join(' ');
  const area = pts.length ? `${line} L${pts[pts.length - 1][0].toFixed(1)},${a.y(0)} L${pts[0][0].toFixed(1)},${a.y(0)} Z` : '';
  return svgFrame('queue depth per minute over the last hour',
    a.nodes,
    pts.length ? [s('path', { class: 'depth-area', d: area }), s('path', { class: 'depth-line', d: line })] : [],
    minutes.map((m) => s('circle', { class: 'depth-point', cx: f.x(m.at) + f.slot / 2, cy: a.y(m.queueDepth), r: 2.5 },
      s('title', {}, `${when(m.at)}: ${m.queueDepth} recipients queued`))),
  );
}

function outcomesChart(minutes) {
  const f = frame(minutes);
  const max = niceMax(Math.max(0, ...minutes.map((m) => m.delivered + m.deferred + m.bounced)));
  const a = axes(max, f);
  const barW = Math.max(2, f.slot - 2);
  return svgFrame('delivered, deferred and bounced recipients per minute over the last hour',
    a.nodes,
    minutes.map((m) => {
      let top = a.y(0);
      const bars = ['delivered', 'deferred', 'bounced'].filter((k) => m[k] > 0).map((k) => {
        const hgt = a.y(0) - a.y(m[k]);
        top -= hgt;
        return s('rect', { class: `bar bar-${k}`, x: (f.x(m.at) + 1).toFixed(1), y: top.toFixed(1), width: barW.toFixed(1), height: hgt.toFixed(1) });
      });
      return s('g', { class: 'minute' }, bars, s('title', {}, `${when(m.at)}: delivered ${m.delivered}, deferred ${m.deferred}, bounced ${m.bounced}`));
    }),
  );
}

// ---------------------------------------------------------------- message list and search

const FILTER_FIELDS = ['recipient', 'sender', 'state', 'domain'];

async function messagesView(view, r, current) {
  const filter = Object.fromEntries(FILTER_FIELDS.filter((k) => r.params[k]).map((k) => [k, r.params[k]]));
  const form = searchForm(r.params);
  let list;
  try {
    list = await api(`/messages${query({ ...filter, cursor: r.params.cursor, limit: 50 })}`);
  } catch (err) {
    // A search the server refuses (400): keep the form so it can be fixed.
    if (!(err instanceof ApiError) || err.status !== 400) throw err;
    if (current()) view.replaceChildren(h('h1', {}, 'Messages'), form, errorBox(err));
    return;
  }
  if (!current()) return;
  view.replaceChildren(
    h('h1', {}, 'Messages'),
    form,
    list.messages.length === 0
      ? h('p', { class: 'empty', id: 'no-messages' }, 'No message matches.')
      : messagesTable(list.messages),
    h('p', { class: 'pager' },
      r.params.cursor ? h('a', { href: `#/messages${query(filter)}` }, '« first page') : '',
      list.next ? h('a', { id: 'next-page', href: `#/messages${query({ ...filter, cursor: list.next })}` }, 'next page »') : ''),
    Object.keys(filter).length > 0 && list.messages.length > 0 ? bulkActions(filter) : '',
  );
}

function searchForm(params) {
  const field = (name, label, type = 'search') =>
    h('label', {}, label, h('input', { name, type, value: params[name] ?? '', placeholder: label.toLowerCase(), autocomplete: 'off' }));
  return h('form', {
    id: 'search', class: 'search', role: 'search',
    onsubmit: (event) => {
      event.preventDefault();
      const data = new FormData(event.currentTarget);
      const next = Object.fromEntries(FILTER_FIELDS.map((k) => [k, String(data.get(k) ?? '').trim()]));
      const hash = `#/messages${query(next)}`;
      if (location.hash === hash) void render();
      else location.hash = hash;
    },
  },
  field('recipient', 'Recipient'),
  field('sender', 'Sender'),
  field('domain', 'Domain'),
  h('label', {}, 'State', h('select', { name: 'state' },
    h('option', { value: '' }, 'any'),
    STATES.map((st) => h('option', { value: st, selected: params.state === st }, st)))),
  h('button', { type: 'submit' }, 'Search'));
}

function lastReplyOf(m) {
  return m.recipients.find((x) => x.lastReply && x.state !== 'delivered')?.lastReply ?? m.recipients.find((x) => x.lastReply)?.lastReply ?? '';
}

function messagesTable(messages) {
  return h('table', { id: 'messages', class: 'grid' },
    h('thead', {}, h('tr', {}, ['ID', 'Received', 'Sender', 'Recipients', 'Attempts', 'Next attempt', 'Last reply'].map((c) => h('th', {}, c)))),
    h('tbody', {}, messages.map((m) => h('tr', { 'data-id': m.id },
      h('td', {}, h('a', { class: 'id', href: `#/messages/${encodeURIComponent(m.id)}` }, m.id)),
      h('td', {}, timeCell(m.receivedAt)),
      h('td', {}, m.sender || '<>'),
      h('td', {}, h('ul', { class: 'rcpts' }, m.recipients.map((x) => h('li', {}, x.address, ' ', stateBadge(x.state))))),
      h('td', { class: 'num' }, String(m.attempts)),
      h('td', {}, timeCell(m.nextAttemptAt)),
      h('td', { class: 'reply' }, h('code', {}, lastReplyOf(m))),
    ))),
  );
}

/** Act on every message the current search matches: preview with dryRun, then confirm. */
function bulkActions(filter) {
  const select = h('select', { name: 'action' }, ACTIONS.map((a) => h('option', { value: a.action }, a.label)));
  const reason = h('input', { name: 'reason', type: 'text', placeholder: 'reason (bounce: required)' });
  const panel = h('div', { class: 'confirm', hidden: true });
  const preview = async () => {
    const action = select.value;
    const body = { action, filter, dryRun: true, ...(reason.value.trim() ? { reason: reason.value.trim() } : {}) };
    panel.hidden = false;
    panel.replaceChildren(h('p', {}, 'Checking what would change…'));
    try {
      const dry = await api('/actions', { method: 'POST', body });
      const changing = dry.results.filter((x) => x.changed).length;
      panel.replaceChildren(
        h('p', {}, `${action}: ${dry.matched} message(s) match this search; ${changing} would change.`),
        h('button', {
          type: 'button', id: 'bulk-confirm', class: action === 'delete' || action === 'bounce' ? 'danger' : '', disabled: changing === 0,
          onclick: () => void run({ ...body, dryRun: false, confirm: true }),
        }, `Yes, ${action} ${changing}`),
        h('button', { type: 'button', onclick: () => { panel.hidden = true; } }, 'Cancel'),
      );
    } catch (err) {
      panel.replaceChildren(errorBox(err), h('button', { type: 'button', onclick: () => { panel.hidden = true; } }, 'Close'));
    }
  };
  const run = async (body) => {
    try {
      const result = await api('/actions', { method: 'POST', body });
      panel.hidden = true;
      setStatus(`${body.action}: ${result.results.filter((x) => x.changed).length} of ${result.matched} changed`);
      await render();
    } catch (err) {
      panel.replaceChildren(errorBox(err), h('button', { type: 'button', onclick: () => { panel.hidden = true; } }, 'Close'));
    }
  };
  return h('section', { class: 'bulk' },
    h('h2', {}, 'Every message this search matches'),
    h('p', { class: 'actions' }, select, reason, h('button', { type: 'button', onclick: () => void preview() }, 'Preview…')),
    panel);
}

// ---------------------------------------------------------------- one message: facts, actions, history

async function messageView(view, r, current) {
  let m;
  try {
    m = await api(`/messages/${encodeURIComponent(r.id)}`);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 400)) {
      view.replaceChildren(h('h1', {}, `Message ${r.id}`), errorBox(err), h('p', {}, h('a', { href: '#/messages' }, '« all messages')));
      return;
    }
    throw err;
  }
  if (!current()) return;
  const keepOpen = view.querySelector(`.confirm:not([hidden])[data-for="${CSS.escape(m.id)}"]`);
  if (keepOpen) return; // the operator is confirming: do not redraw under them
  view.replaceChildren(
    h('p', { class: 'crumbs' }, h('a', { href: '#/messages' }, '« messages')),
    h('h1', {}, 'Message ', h('code', { id: 'message-id' }, m.id)),
    h('dl', { class: 'facts' },
      fact('Sender', m.sender || '<> (null sender)'),
      fact('Received', [when(m.receivedAt), ` (${age(m.receivedAt)} ago)`]),
      fact('Size', `${m.size} bytes`),
      fact('Attempts', String(m.attempts)),
      fact('Next', h('span', { id: 'next-why' }, m.next?.why ?? '', m.next?.at ? [' ', timeCell(m.next.at)] : '')),
      fact('Client', `${m.client.ip} (HELO ${m.client.helo}, ${m.client.protocol})`),
      fact('Body', `${m.body}${m.smtputf8 ? ', SMTPUTF8' : ''}`),
      m.dsn?.ret || m.dsn?.envid ? fact('DSN', [m.dsn.ret ? `RET=${m.dsn.ret} ` : '', m.dsn.envid ? `ENVID=${m.dsn.envid}` : '']) : '',
      m.lease ? fact('Lease', `${m.lease.owner} until ${when(m.lease.until)}`) : '',
    ),
    h('h2', {}, 'Recipients'),
    h('table', { id: 'recipients', class: 'grid' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Recipient'), h('th', {}, 'State'), h('th', {}, 'Last reply'))),
      h('tbody', {}, m.recipients.map((x) => h('tr', { 'data-recipient': x.address, 'data-state': x.state },
        h('td', {}, x.address), h('td', {}, stateBadge(x.state)), h('td', { class: 'reply' }, h('code', {}, x.lastReply ?? '')))))),
    actionBar(m),
    h('h2', {}, 'History'),
    historyTable(m.history),
    h('details', {}, h('summary', {}, `Headers (${m.headers.length})`),
      h('table', { class: 'grid headers' }, h('tbody', {}, m.headers.map((x) => h('tr', {}, h('th', {}, x.name), h('td', {}, h('code', {}, x.value))))))),
  );
}

function fact(name, value) {
  return [h('dt', {}, name), h('dd', {}, value)];
}

function historyTable(history) {
  if (history.length === 0) return h('p', { class: 'empty', id: 'history' }, 'No attempt yet.');
  return h('table', { id: 'history', class: 'grid' },
    h('thead', {}, h('tr', {}, ['When', 'Next hop', 'Results', 'Next attempt', 'Note'].map((c) => h('th', {}, c)))),
    h('tbody', {}, history.map((a) => h('tr', {},
      h('td', {}, h('time', { datetime: a.at }, when(a.at))),
      h('td', {}, a.nextHop || '–'),
      h('td', {}, h('ul', { class: 'results' }, a.results.map((x) => h('li', {}, x.recipient, ' ', stateBadge(x.state), ' ', h('code', {}, x.reply))))),
      h('td', {}, a.nextAttemptAt ? when(a.nextAttemptAt) : ''),
      h('td', {}, a.note ?? ''),
    ))),
  );
}

/** What the last action on a message page did, shown on that message's page until the next one. */
let lastAction;

/** The CLI's actions on this message; each asks for confirmation first. */
function actionBar(m) {
  const panel = h('div', { class: 'confirm', hidden: true, 'data-for': m.id, role: 'dialog', 'aria-label': 'confirm action' });
  const ask = (a) => {
    const reason = h('input', { type: 'text', id: 'action-reason', placeholder: a.reason === 'required' ? 'reason (required, goes into the DSN)' : 'reason (optional)' });
    const confirm = h('button', {
      type: 'button', class: a.action === 'delete' || a.action === 'bounce' ? 'danger' : '', id: 'confirm-action',
      onclick: async () => {
        const text = reason.value.trim();
        if (a.reason === 'required' && !text) {
          reason.focus();
          reason.setAttribute('aria-invalid', 'true');
          return;
        }
        confirm.disabled = true;
        try {
          const result = await api('/actions', { method: 'POST', body: { action: a.action, ids: [m.id], ...(text && a.reason !== 'none' ? { reason: text } : {}) } });
          const mine = result.results.find((x) => x.id === m.id);
          panel.hidden = true;
          const note = `${a.action}: ${mine?.changed ? 'done' : `nothing changed${mine?.detail ? ` (${mine.detail})` : ''}`}`;
          lastAction = { id: m.id, text: note, ok: Boolean(mine?.changed) };
          await render();
        } catch (err) {
          panel.replaceChildren(errorBox(err), h('button', { type: 'button', onclick: () => { panel.hidden = true; } }, 'Close'));
        }
      },
    }, `Yes, ${a.action}`);
    panel.replaceChildren(
      h('p', {}, `${a.verb[0].toUpperCase()}${a.verb.slice(1)} message `, h('code', {}, m.id), '?'),
      a.reason === 'none' ? '' : reason,
      confirm,
      h('button', { type: 'button', id: 'cancel-action', onclick: () => { panel.hidden = true; } }, 'Cancel'),
    );
    panel.hidden = false;
    (a.reason === 'none' ? confirm : reason).focus();
  };
  return h('section', { class: 'actions-bar' },
    h('h2', {}, 'Actions'),
    h('p', { class: 'actions' }, ACTIONS.map((a) => h('button', { type: 'button', 'data-action': a.action, onclick: () => ask(a) }, a.label)),
      lastAction?.id === m.id ? h('span', { id: 'action-result', class: lastAction.ok ? 'ok' : 'warn', role: 'status' }, lastAction.text) : ''),
    panel);
}

// ---------------------------------------------------------------- start

window.addEventListener('hashchange', () => void render());
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) void render();
});
void render();
