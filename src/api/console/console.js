// meterflow operator console: a plain ES module, no build step. Everything shown comes from the API with the
// operator's token, which is kept in this tab's sessionStorage only. Text is set with textContent, never as HTML.

import { ANOMALY_TYPES, CUSTOMER_CLASSES, SEVERITIES } from './contracts.js';

const TOKEN_KEY = 'meterflow.console.token';
const BY_KEY = 'meterflow.console.by';
const POLL_MS = 3000;
const WRITE_SCOPE = 'alerts:write';

// The vocabulary of src/contracts (served as /console/contracts.js), each list ascending: info … critical,
// residential … critical. Ranks count from the most urgent.
const rank = (list) => Object.fromEntries([...list].reverse().map((v, i) => [v, i]));
const SEVERITY_RANK = rank(SEVERITIES);
const CLASS_RANK = rank(CUSTOMER_CLASSES);
const CLASSES = [...CUSTOMER_CLASSES].reverse();
const TYPES = [...ANOMALY_TYPES].sort();
// Grafana dashboards (grafana/dashboards/*.json uid) the alerts link into.
const DASH_METER = 'meterflow-meter';
const DASH_FEEDERS = 'meterflow-feeders';
const HOUR = 3_600_000;

const ACTIONS = {
  ack: { label: 'Acknowledge', title: 'Acknowledge alert', path: 'ack', states: ['open'] },
  assign: { label: 'Assign', title: 'Assign alert', path: 'assign', states: ['open', 'acknowledged'] },
  resolve: { label: 'Resolve', title: 'Resolve alert', path: 'resolve', states: ['open', 'acknowledged'] },
};

const $ = (id) => {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`console page lacks #${id}`);
  return el;
};

const state = {
  token: null,
  who: null,
  alerts: [],
  lastRender: '',
  timer: null,
  openDetails: new Set(),
  pending: null,
  /** Number of the latest list request: an older answer arriving late is dropped. */
  seq: 0,
};

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = { authorization: `Bearer ${state.token}`, accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  const json = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, json && typeof json.message === 'string' ? json.message : `HTTP ${res.status}`);
  return json;
}

const can = (scope) => state.who !== null && (state.who.scopes.includes(scope) || state.who.scopes.includes('admin'));

// --- time and links -------------------------------------------------------------------------------------------

const ms = (iso) => (typeof iso === 'string' ? Date.parse(iso) : Number.NaN);
const pad = (n) => String(n).padStart(2, '0');
const clock = (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
/** Local date and time, e.g. 2026-12-06 07:22. */
const stamp = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

function duration(msSpan) {
  if (!Number.isFinite(msSpan) || msSpan < 0) return '—';
  const min = Math.floor(msSpan / 60_000);
  if (min < 1) return '< 1 min';
  if (min < 60) return `${min} min`;
  const h = Math.floor(min / 60);
  if (h < 48) return `${h} h ${min % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** When the alert's trouble began: the outage's start, else the first event. */
const startOf = (a) => (a.outage ? ms(a.outage.startedAt) : ms(a.firstSeen));

function spanOf(a, now) {
  if (a.outage && typeof a.outage.durationMs === 'number') return a.outage.durationMs;
  return now - startOf(a);
}

/** Grafana time range around the alert: an hour before it began to an hour after it ended (or now). */
function range(a) {
  const from = startOf(a) - HOUR;
  const end = a.outage && a.outage.restoredAt ? ms(a.outage.restoredAt) : Number.NaN;
  return { from: String(from), to: Number.isFinite(end) ? String(end + HOUR) : 'now' };
}

function grafana(uid, vars, a) {
  const base = state.who?.grafanaUrl ?? '';
  if (!/^https?:\/\//.test(base)) return null;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(vars)) if (typeof v === 'string' && v !== '') q.set(`var-${k}`, v);
  const r = range(a);
  q.set('from', r.from);
  q.set('to', r.to);
  return `${base}/d/${uid}/?${q.toString()}`;
}

function link(href, text, label) {
  const el = document.createElement('a');
  el.textContent = text;
  if (href === null) return el;
  el.href = href;
  el.target = '_blank';
  el.rel = 'noopener noreferrer';
  el.setAttribute('aria-label', label);
  return el;
}

// --- the list -------------------------------------------------------------------------------------------------

function filters() {
  const form = $('filters');
  const v = (name) => String(new FormData(form).get(name) ?? '').trim();
  return { state: v('state'), type: v('type'), class: v('class'), feeder: v('feeder'), transformer: v('transformer') };
}

function matches(a, f) {
  const feeder = a.feederId ?? a.outage?.feederId ?? '';
  const transformer = a.transformerId ?? a.outage?.transformerId ?? '';
  return (
    f.state.split(',').includes(a.state) &&
    (f.type === '' || a.type === f.type) &&
    (f.class === '' || a.customerClass === f.class) &&
    (f.feeder === '' || feeder === f.feeder) &&
    (f.transformer === '' || transformer === f.transformer)
  );
}

function compare(a, b) {
  const sev = (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9);
  if (sev !== 0) return sev;
  const cls = (CLASS_RANK[a.customerClass] ?? 9) - (CLASS_RANK[b.customerClass] ?? 9);
  if (cls !== 0) return cls;
  return startOf(b) - startOf(a);
}

async function refresh() {
  if (state.token === null) return;
  const f = filters();
  const seq = ++state.seq;
  try {
    // Alerts an outage covers are hidden by the API (suppressed=exclude): the outage's row lists its meters.
    const q = new URLSearchParams({ state: f.state, suppressed: 'exclude', limit: '500' });
    for (const k of ['type', 'feeder', 'transformer', 'class']) if (f[k] !== '') q.set(k, f[k]);
    const page = await api('GET', `/api/v1/alerts?${q.toString()}`);
    if (seq !== state.seq || state.token === null) return;
    state.alerts = page.items.filter((a) => matches(a, f)).sort(compare);
    $('list-error').textContent = '';
    render();
    $('updated').textContent = `updated ${clock(new Date())}`;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return logout('Your token is no longer accepted: log in again.');
    $('list-error').textContent = `Could not update the list: ${err instanceof Error ? err.message : String(err)}`;
  }
}

/** The outage's meters and customers (records written before the API listed them have none: counts only). */
function affected(a) {
  const o = a.outage;
  const list = (v) => (Array.isArray(v) ? v.map(String) : []);
  return { meters: list(o?.affectedMeters), customers: list(o?.affectedCustomers) };
}

function cell(tr, label, cls) {
  const td = document.createElement('td');
  td.dataset.label = label;
  if (cls) td.className = cls;
  tr.append(td);
  return td;
}

function textEl(tag, text, cls) {
  const el = document.createElement(tag);
  el.textContent = text;
  if (cls) el.className = cls;
  return el;
}

function alertCell(td, a) {
  const o = a.outage;
  const title = o ? `Outage on transformer ${o.transformerId}` : `${a.type} on ${a.subjectKind} ${a.subject}`;
  td.append(textEl('div', title, 'title'));
  if (a.reason) td.append(textEl('div', a.reason, 'reason'));
  const feeder = a.feederId ?? o?.feederId ?? null;
  const transformer = a.transformerId ?? o?.transformerId ?? null;
  const meta = [feeder && `feeder ${feeder}`, transformer && `transformer ${transformer}`, a.meterId && `meter ${a.meterId}`, plural(a.count, 'event')];
  td.append(textEl('div', meta.filter(Boolean).join(' · '), 'meta'));

  const links = document.createElement('div');
  links.className = 'links';
  if (a.meterId) links.append(link(grafana(DASH_METER, { meter: a.meterId, feeder, transformer }, a), 'meter in Grafana', `Grafana: meter ${a.meterId}`));
  if (transformer) links.append(link(grafana(DASH_FEEDERS, { feeder, transformer }, a), 'transformer in Grafana', `Grafana: transformer ${transformer}`));
  if (feeder) links.append(link(grafana(DASH_FEEDERS, { feeder }, a), 'feeder in Grafana', `Grafana: feeder ${feeder}`));
  td.append(links);

  if (o) {
    const { meters, customers } = affected(a);
    const critical = o.criticalCustomers.length > 0 ? `, ${o.criticalCustomers.length} critical` : '';
    const details = disclosure(`affected:${a.id}`, `${plural(o.metersAffected, 'meter')}, ${plural(o.customersAffected, 'customer')} affected${critical}`);
    details.classList.add('affected');
    if (o.criticalCustomers.length > 0) details.append(textEl('p', `Critical customers: ${o.criticalCustomers.join(', ')}`, 'meta'));
    if (meters.length > 0) {
      details.append(textEl('div', 'Meters', 'meta'));
      const ul = document.createElement('ul');
      ul.className = 'meters';
      for (const m of meters) {
        const li = document.createElement('li');
        li.append(link(grafana(DASH_METER, { meter: m, feeder, transformer }, a), m, `Grafana: meter ${m}`));
        ul.append(li);
      }
      details.append(ul);
    }
    if (customers.length > 0) {
      details.append(textEl('div', 'Customers', 'meta'));
      const ul = document.createElement('ul');
      ul.className = 'customers';
      for (const c of customers) ul.append(textEl('li', c));
      details.append(ul);
    }
    if (o.stillDown > 0) details.append(textEl('p', `${plural(o.stillDown, 'meter')} still down`, 'meta'));
    td.append(details);
  }
  // Loaded each time it is opened (and again after a re-render while open), unless a load is under way.
  const history = disclosure(`history:${a.id}`, 'History', (d) => {
    if (d.querySelector('[aria-busy]') === null) void loadHistory(d, a.id);
  });
  history.classList.add('history');
  td.append(history);
  if (history.open) void loadHistory(history, a.id);
}

/** `<details>` whose open state survives re-renders (keyed by `key`); `onOpen` runs each time it is shown open. */
function disclosure(key, summary, onOpen) {
  const details = document.createElement('details');
  details.dataset.key = key;
  details.append(textEl('summary', summary));
  details.addEventListener('toggle', () => {
    if (details.open) {
      state.openDetails.add(key);
      onOpen?.(details);
    } else state.openDetails.delete(key);
  });
  details.open = state.openDetails.has(key);
  return details;
}

function historyLine(e) {
  const who = e.by ? ` by ${e.by}` : '';
  const to = e.action === 'assigned' && e.assignee ? ` to ${e.assignee}` : '';
  const comment = e.comment ? `: “${e.comment}”` : '';
  return `${stamp(new Date(ms(e.at)))} ${e.action}${who}${to}${comment}`;
}

/** Loads the alert's history (oldest first) into its disclosure. */
async function loadHistory(details, id) {
  const list = document.createElement('ol');
  list.className = 'history';
  list.setAttribute('aria-busy', 'true');
  details.querySelector('ol.history, p.history')?.remove();
  details.append(list);
  try {
    const page = await api('GET', `/api/v1/alerts/${encodeURIComponent(id)}/history`);
    list.replaceChildren(...page.items.map((e) => textEl('li', historyLine(e))));
    if (page.items.length === 0) list.replaceWith(textEl('p', 'No history yet.', 'history meta'));
  } catch (err) {
    list.replaceWith(textEl('p', err instanceof ApiError && err.status === 404 ? 'This API keeps no history.' : 'Could not load the history.', 'history meta'));
  } finally {
    list.removeAttribute('aria-busy');
  }
}

function row(a, now) {
  const tr = document.createElement('tr');
  tr.dataset.alertId = a.id;
  tr.dataset.type = a.type;
  cell(tr, 'Severity').append(textEl('span', a.severity, `badge sev-${a.severity}`));
  alertCell(cell(tr, 'Alert', 'cell-alert'), a);
  cell(tr, 'Class').textContent = a.customerClass ?? '—';
  const st = cell(tr, 'State', 'cell-state');
  st.append(textEl('span', a.state, `state-${a.state}`));
  if (a.acknowledgedBy) st.append(textEl('div', `by ${a.acknowledgedBy}`, 'meta'));
  const since = cell(tr, 'Since', 'cell-since');
  since.append(textEl('div', duration(spanOf(a, now)), 'duration'));
  since.append(textEl('div', stamp(new Date(startOf(a))), 'meta'));
  cell(tr, 'Assignee', 'cell-assignee').textContent = typeof a.assignee === 'string' && a.assignee !== '' ? a.assignee : '—';
  const actions = cell(tr, 'Actions', 'cell-actions');
  const box = document.createElement('div');
  box.className = 'actions';
  const allowed = can(WRITE_SCOPE);
  for (const [kind, def] of Object.entries(ACTIONS)) {
    if (!def.states.includes(a.state)) continue;
    const b = textEl('button', def.label);
    b.type = 'button';
    b.dataset.action = kind;
    b.dataset.id = a.id;
    b.disabled = !allowed;
    b.setAttribute('aria-label', `${def.label}: ${a.type} ${a.subject}`);
    if (!allowed) b.title = `needs the ${WRITE_SCOPE} scope`;
    b.addEventListener('click', () => openAction(kind, a));
    box.append(b);
  }
  actions.append(box);
  return tr;
}

function render() {
  const now = Date.now();
  // Same data: only the durations move, so the table (focus, open disclosures) stays as it is.
  const key = JSON.stringify([state.alerts, state.who?.scopes]);
  const tbody = $('rows');
  if (key === state.lastRender) {
    for (const tr of tbody.querySelectorAll('tr[data-alert-id]')) {
      const a = state.alerts.find((x) => x.id === tr.dataset.alertId);
      const d = tr.querySelector('.duration');
      if (a && d) d.textContent = duration(spanOf(a, now));
    }
    return;
  }
  state.lastRender = key;
  const focused = document.activeElement;
  const refocus = focused instanceof HTMLElement && tbody.contains(focused) ? { id: focused.dataset.id, action: focused.dataset.action } : null;
  const rows = state.alerts.map((a) => row(a, now));
  if (rows.length === 0) {
    const tr = document.createElement('tr');
    tr.className = 'empty';
    const td = textEl('td', 'No open alerts match the filters.');
    td.colSpan = 7;
    tr.append(td);
    rows.push(tr);
  }
  tbody.replaceChildren(...rows);
  if (refocus?.id && refocus.action) tbody.querySelector(`button[data-id="${CSS.escape(refocus.id)}"][data-action="${refocus.action}"]`)?.focus();
  const open = state.alerts.filter((a) => a.state === 'open').length;
  const outages = state.alerts.filter((a) => a.type === 'outage').length;
  $('summary').textContent = `${plural(state.alerts.length, 'alert')}: ${open} open, ${state.alerts.length - open} acknowledged; ${plural(outages, 'outage')}`;
}

// --- actions --------------------------------------------------------------------------------------------------

function openAction(kind, a) {
  if (!can(WRITE_SCOPE)) return;
  const def = ACTIONS[kind];
  state.pending = { kind, id: a.id };
  $('action-title').textContent = def.title;
  $('action-subject').textContent = a.outage ? `Outage on transformer ${a.outage.transformerId}` : `${a.type} on ${a.subject}`;
  $('assignee-field').hidden = kind !== 'assign';
  $('action-assignee').required = kind === 'assign';
  $('action-assignee').value = typeof a.assignee === 'string' ? a.assignee : '';
  $('action-comment').value = '';
  $('action-error').textContent = '';
  $('action-confirm').textContent = def.label;
  const dialog = $('action-dialog');
  dialog.showModal();
  (kind === 'assign' ? $('action-assignee') : $('action-comment')).focus();
}

async function confirmAction(ev) {
  ev.preventDefault();
  const p = state.pending;
  if (p === null) return;
  const body = {};
  const by = $('f-by').value.trim();
  if (by !== '') body.by = by;
  const comment = $('action-comment').value.trim();
  if (comment !== '') body.comment = comment;
  if (p.kind === 'assign') {
    const assignee = $('action-assignee').value.trim();
    if (assignee === '') {
      $('action-error').textContent = 'Name the person to assign it to.';
      $('action-assignee').focus();
      return;
    }
    body.assignee = assignee;
  }
  const button = $('action-confirm');
  button.disabled = true;
  try {
    await api('POST', `/api/v1/alerts/${encodeURIComponent(p.id)}/${ACTIONS[p.kind].path}`, body);
    state.pending = null;
    $('action-dialog').close();
    await refresh();
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    $('action-error').textContent = err instanceof ApiError && err.status === 404 && p.kind === 'assign' ? 'This API does not assign alerts yet.' : msg;
  } finally {
    button.disabled = false;
  }
}

// --- session --------------------------------------------------------------------------------------------------

function showScopes() {
  $('who-id').textContent = state.who.id;
  $('who-scopes').textContent = state.who.scopes.length > 0 ? state.who.scopes.join(', ') : 'read only';
  $('who').hidden = false;
}

async function login(token) {
  state.token = token;
  try {
    const who = await api('GET', '/api/v1/whoami');
    state.who = { id: String(who.id), scopes: Array.isArray(who.scopes) ? who.scopes.map(String) : [], grafanaUrl: String(who.grafanaUrl ?? '') };
  } catch (err) {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    throw err;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  showScopes();
  $('login').hidden = true;
  $('alerts').hidden = false;
  state.lastRender = '';
  await refresh();
  clearInterval(state.timer);
  state.timer = setInterval(refresh, POLL_MS);
}

function logout(message = '') {
  clearInterval(state.timer);
  state.timer = null;
  state.token = null;
  state.who = null;
  state.alerts = [];
  state.lastRender = '';
  sessionStorage.removeItem(TOKEN_KEY);
  $('rows').replaceChildren();
  $('summary').textContent = '';
  $('updated').textContent = 'not updated yet';
  $('who').hidden = true;
  $('alerts').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
  $('token').value = '';
  $('token').focus();
}

function setup() {
  const type = $('f-type');
  for (const t of TYPES) type.append(new Option(t, t));
  const cls = $('f-class');
  for (const c of CLASSES) cls.append(new Option(c, c));
  $('f-by').value = sessionStorage.getItem(BY_KEY) ?? '';

  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = $('token').value.trim();
    if (token === '') {
      $('login-error').textContent = 'Enter an API token.';
      return;
    }
    $('login-error').textContent = '';
    try {
      await login(token);
      $('token').value = '';
    } catch (err) {
      $('login-error').textContent =
        err instanceof ApiError && err.status === 401 ? 'That token is not accepted.' : `Could not log in: ${err instanceof Error ? err.message : String(err)}`;
    }
  });
  $('logout').addEventListener('click', () => logout());
  const filterForm = $('filters');
  filterForm.addEventListener('submit', (ev) => ev.preventDefault());
  filterForm.addEventListener('change', (ev) => {
    if (ev.target instanceof HTMLInputElement && ev.target.id === 'f-by') sessionStorage.setItem(BY_KEY, ev.target.value.trim());
    else void refresh();
  });
  $('action-form').addEventListener('submit', confirmAction);
  $('action-cancel').addEventListener('click', () => {
    state.pending = null;
    $('action-dialog').close();
  });

  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved !== null) login(saved).catch(() => logout('Your token is no longer accepted: log in again.'));
  else $('token').focus();
}

setup();
