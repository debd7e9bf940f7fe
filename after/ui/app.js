/* After — browser admin UI.
 * Plain JavaScript: no build step, no dependencies, nothing fetched at run time except the
 * REST API on the same origin. Served by the daemon at /ui/.
 * Views (hash routing): #/overview, #/tasks, #/task/<id>, #/workers.
 * The token lives in sessionStorage only and is sent as "Authorization: Bearer <token>".
 * Live updates: /events is read with fetch() (EventSource cannot send headers) and parsed here.
 * Element ids / data-testids used by end-to-end tests are listed in tests/ui/NOTES.md.
 */
(function () {
  'use strict';

  const STATUSES = ['waiting', 'schedule', 'scheduled', 'done', 'err', 'reschedule', 'cancel', 'canceled'];
  const NOT_CANCELABLE = new Set(['done', 'err', 'canceled', 'cancel']);
  const FILTERS = ['status', 'worker', 'job', 'from', 'to'];
  const LIMITS = ['25', '50', '100', '200'];
  const TOKEN_KEY = 'after.token';
  /** Tasks a new worker runs at once: the default of `after start` and POST /workers/{name}. */
  const DEFAULT_CONCURRENCY = 4;
  const MAX_TOASTS = 3;
  const LOG_POLL_MS = 2000, WORKERS_POLL_MS = 3000, OVERVIEW_POLL_MS = 10000;
  const SVGNS = 'http://www.w3.org/2000/svg';

  /* ------------------------------------------------------------------ pure helpers */

  const pad = (n) => String(n).padStart(2, '0');
  const enc = encodeURIComponent;
  const taskHref = (id) => '#/task/' + enc(id);
  const hhmm = (d) => pad(d.getHours()) + ':' + pad(d.getMinutes());
  const hhmmss = (d) => hhmm(d) + ':' + pad(d.getSeconds());
  const ymd = (d) => d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate());

  /** Local "YYYY-MM-DD HH:MM:SS" for an ISO date. */
  function fmtDate(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : ymd(d) + ' ' + hhmmss(d);
  }

  function relTime(iso, now) {
    const diff = (Date.parse(iso) - (now || Date.now())) / 1000;
    if (isNaN(diff)) return '';
    const a = Math.abs(diff);
    const str = a < 60 ? Math.round(a) + ' s' : a < 3600 ? Math.round(a / 60) + ' min'
      : a < 86400 ? (a / 3600).toFixed(1) + ' h' : Math.round(a / 86400) + ' d';
    return diff >= 0 ? 'in ' + str : str + ' ago';
  }

  function fmtDuration(sec) {
    if (sec == null || isNaN(sec)) return '—';
    const s = Math.floor(sec), d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    if (d) return d + 'd ' + h + 'h';
    if (h) return h + 'h ' + pad(m) + 'm';
    return m ? m + 'm ' + pad(s % 60) + 's' : s + 's';
  }

  function fmtMs(v) {
    if (v == null || isNaN(v)) return '—';
    return v >= 1000 ? (v / 1000).toFixed(v >= 10000 ? 0 : 1) + ' s' : Math.round(v) + ' ms';
  }

  /** Value for <input type="datetime-local"> (local time). */
  function toLocalInput(date) {
    const d = date instanceof Date ? date : new Date(date);
    return isNaN(d) ? '' : ymd(d) + 'T' + hhmm(d);
  }
  /** <input type="datetime-local"> value (local time) to an ISO string in UTC; '' when empty. */
  function fromLocalInput(v) {
    const d = v ? new Date(v) : null;
    return d && !isNaN(d) ? d.toISOString() : '';
  }

  /** A round upper bound for a chart axis. */
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  /**
   * Incremental text/event-stream parser (the WHATWG algorithm, minus the network part).
   * push(text) accepts any chunking; onEvent({type, data, id}) fires per dispatched event;
   * onRetry(ms) for "retry:" fields. parser.lastId is the last event id seen.
   */
  function createSseParser(onEvent, onRetry) {
    let buf = '', data = [], type = '';
    const parser = { lastId: null, push: push };
    function line(l) {
      if (l === '') {
        if (data.length) onEvent({ type: type || 'message', data: data.join('\n'), id: parser.lastId });
        data = []; type = '';
        return;
      }
      if (l[0] === ':') return; // comment / keep-alive
      const c = l.indexOf(':');
      const name = c < 0 ? l : l.slice(0, c);
      let value = c < 0 ? '' : l.slice(c + 1);
      if (value[0] === ' ') value = value.slice(1);
      if (name === 'data') data.push(value);
      else if (name === 'event') type = value;
      else if (name === 'id') { if (value.indexOf('\0') < 0) parser.lastId = value; }
      else if (name === 'retry' && /^\d+$/.test(value) && onRetry) onRetry(Number(value));
    }
    function push(chunk) {
      buf += chunk;
      for (;;) {
        const i = buf.search(/[\r\n]/);
        if (i < 0 || (buf[i] === '\r' && i === buf.length - 1)) return; // "\r\n" may be split
        const l = buf.slice(0, i);
        buf = buf.slice(i + (buf[i] === '\r' && buf[i + 1] === '\n' ? 2 : 1));
        line(l);
      }
    }
    return parser;
  }

  /** Normalise a task document or an /events payload to what a table row shows. */
  function rowData(t) {
    const job = t.job && typeof t.job === 'object' ? t.job.name : t.job;
    return { id: t._id || t.id, status: t.status, worker: t.worker, job: job, date: t.date, cron: t.cron, priority: t.priority, attempts: t.attempts };
  }

  /** Does a task (rowData) match the tasks filter {status, worker, job, from, to}? */
  function matchesFilter(t, f) {
    if ((f.status && t.status !== f.status) || (f.worker && t.worker !== f.worker) || (f.job && t.job !== f.job)) return false;
    const d = Date.parse(t.date);
    return !(f.from && !(d >= Date.parse(f.from))) && !(f.to && !(d <= Date.parse(f.to)));
  }

  /* ------------------------------------------------------------------ DOM helpers */

  const $ = (sel, root) => (root || document).querySelector(sel);

  function setAttrs(el, attrs) {
    for (const k in attrs) {
      const v = attrs[k];
      if (v == null || v === false || k === 'value') continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  function append(el, kids) {
    for (const k of kids.flat(Infinity)) {
      if (k != null && k !== false) el.appendChild(typeof k === 'object' ? k : document.createTextNode(String(k)));
    }
    return el;
  }
  /** h('tag', {attr: value, onclick: fn}, ...children); `value` is set as a property last. */
  function h(tag, attrs, ...kids) {
    const el = append(document.createElement(tag), kids);
    setAttrs(el, attrs || {});
    if (attrs && attrs.value != null) el.value = attrs.value;
    return el;
  }
  function s(tag, attrs, ...kids) {
    const el = document.createElementNS(SVGNS, tag);
    setAttrs(el, attrs || {});
    return append(el, kids);
  }
  /** {id, data-testid} with the same value, merged into other attributes. */
  const tid = (id, attrs) => Object.assign({ id: id, 'data-testid': id }, attrs);
  const button = (id, label, cls, onclick) => h('button', tid(id, { type: 'button', class: cls || null, onclick: onclick }), label);

  function field(label, input, hint) {
    if (hint) input.setAttribute('aria-describedby', input.id + '-hint');
    return h('div', { class: 'field' }, h('label', { for: input.id }, label), input,
      hint ? h('small', { id: input.id + '-hint', class: 'muted' }, hint) : null);
  }
  const badge = (st) => h('span', { class: 'badge', 'data-status': st || '' }, st || '?');
  const timeEl = (iso) => (iso ? h('time', { datetime: iso, title: iso + ' (' + relTime(iso) + ')' }, fmtDate(iso)) : '');
  const json = (v) => JSON.stringify(v, null, 2);
  const headRow = (cols) => h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c))));

  function throttle(fn, ms) {
    let t = null;
    const f = () => { if (!t) t = setTimeout(() => { t = null; fn(); }, ms); };
    f.cancel = () => { clearTimeout(t); t = null; };
    return f;
  }

  function flash(msg, kind, ms) {
    kind = kind || 'info';
    const t = h('div', { class: 'toast toast-' + kind, 'data-testid': 'toast', 'data-kind': kind }, h('span', {}, msg),
      h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss', onclick: () => t.remove() }, '×'));
    const box = $('#toasts');
    box.appendChild(t);
    while (box.children.length > MAX_TOASTS) box.firstElementChild.remove(); // the oldest go first
    setTimeout(() => t.remove(), ms || (kind === 'error' ? 10000 : 5000));
  }
  function showError(e) {
    if (e && e.status === 401) return; // the login form is back, with the message
    flash((e && e.message) || String(e), 'error');
  }

  /** Modal confirmation (<dialog>); resolves true when confirmed. Esc cancels. */
  function confirmDialog(message, okLabel) {
    const dlg = $('#confirm-dialog');
    if (!dlg || typeof dlg.showModal !== 'function') return Promise.resolve(window.confirm(message));
    $('#confirm-message').textContent = message;
    $('#confirm-ok').textContent = okLabel || 'OK';
    return new Promise((resolve) => {
      dlg.returnValue = '';
      dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
      dlg.showModal();
      $('#confirm-cancel').focus();
    });
  }

  /* ------------------------------------------------------------------ token + API */

  let memToken = '';
  function getToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return memToken; }
  }
  function setToken(t) {
    memToken = t || '';
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* storage disabled: memory only */ }
  }

  /** An Error with the HTTP status and the API's {error, field}. */
  const apiError = (status, message, body) => Object.assign(new Error(message), { status: status, code: body && body.error, field: body && body.field });
  async function errorFrom(res) {
    const raw = await res.text().catch(() => '');
    let body = null;
    try { body = JSON.parse(raw); } catch (_) { /* not JSON: show the text */ }
    const msg = (body && (body.message || body.error)) || raw.slice(0, 300) || res.statusText || 'HTTP ' + res.status;
    return apiError(res.status, msg, body);
  }

  /** Call the API; JSON in and out (text when opts.text). A 401 brings the login form back. */
  async function api(method, path, body, opts) {
    const text = opts && opts.text;
    const headers = { Authorization: 'Bearer ' + getToken(), Accept: text ? 'text/plain' : 'application/json' };
    const init = { method: method, headers: headers, cache: 'no-store' };
    if (body !== undefined) { headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
    let res;
    try { res = await fetch(path, init); } catch (e) { throw apiError(0, 'Network error: ' + e.message); }
    if (!res.ok) {
      const err = await errorFrom(res);
      if (res.status === 401) needLogin(err.message);
      throw err;
    }
    const raw = await res.text();
    if (text) return raw;
    try { return raw ? JSON.parse(raw) : null; } catch (_) { throw apiError(res.status, 'Bad JSON from ' + path); }
  }

  /* ------------------------------------------------------------------ live events */

  const sse = { ctrl: null, timer: null, lastId: null, delay: 1000, retry: null, state: 'off' };
  const SSE_LABELS = { off: 'Live: off', connecting: 'Connecting…', open: 'Live', closed: 'Reconnecting…' };

  function setSse(state, detail) {
    sse.state = state;
    const el = $('#sse-status');
    el.dataset.state = state;
    el.textContent = SSE_LABELS[state];
    el.title = detail || '';
  }

  function stopEvents() {
    if (sse.ctrl) sse.ctrl.abort();
    sse.ctrl = null;
    clearTimeout(sse.timer);
    setSse('off');
  }

  function onSseEvent(ev) {
    if (ev.id != null) sse.lastId = ev.id;
    if (ev.type !== 'task' || !current || !current.onEvent) return;
    try { current.onEvent(JSON.parse(ev.data)); } catch (e) { console.error(e); }
  }

  /** GET /events with the token; reconnects with Last-Event-ID and backoff after a drop. */
  async function startEvents() {
    if (sse.ctrl) sse.ctrl.abort();
    clearTimeout(sse.timer);
    const ctrl = new AbortController();
    sse.ctrl = ctrl;
    setSse('connecting');
    try {
      const headers = { Authorization: 'Bearer ' + getToken(), Accept: 'text/event-stream' };
      if (sse.lastId) headers['Last-Event-ID'] = sse.lastId;
      const res = await fetch('/events', { headers: headers, signal: ctrl.signal, cache: 'no-store' });
      if (res.status === 401) { needLogin((await errorFrom(res)).message); return; }
      if (!res.ok || !res.body) throw new Error('HTTP ' + res.status);
      setSse('open');
      sse.delay = 1000;
      const parser = createSseParser(onSseEvent, (ms) => { sse.retry = ms; });
      parser.lastId = sse.lastId;
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      for (let r = await reader.read(); !r.done; r = await reader.read()) parser.push(dec.decode(r.value, { stream: true }));
      throw new Error('stream ended');
    } catch (e) {
      if (ctrl.signal.aborted || sse.ctrl !== ctrl) return;
      const wait = sse.retry || sse.delay;
      sse.delay = Math.min(sse.delay * 2, 30000);
      setSse('closed', e.message + '; retrying in ' + Math.round(wait / 1000) + ' s');
      sse.timer = setTimeout(startEvents, wait);
    }
  }

  /* ------------------------------------------------------------------ login + routing */

  let current = null; // the view on screen: {main, cleanups, onEvent, dead, alive(), every()}

  function teardown() {
    if (!current) return;
    current.dead = true;
    for (const f of current.cleanups) { try { f(); } catch (_) { /* ignore */ } }
    current = null;
  }

  function loginError(msg) {
    const err = $('#login-error');
    err.textContent = msg || '';
    err.hidden = !msg;
  }

  function showLogin(msg) {
    stopEvents();
    teardown();
    $('#view').replaceChildren();
    $('#app').hidden = true;
    $('#login').hidden = false;
    loginError(msg);
    document.title = 'After · Sign in';
    $('#token-input').value = '';
    $('#token-input').focus();
  }

  function needLogin(msg) {
    setToken('');
    msg = msg || 'Your token was refused; please sign in again.';
    if ($('#login').hidden) showLogin(msg);
    else { loginError(msg); $('#token-input').focus(); }
  }

  async function onLogin(ev) {
    ev.preventDefault();
    const token = $('#token-input').value.trim();
    if (!token) { loginError('Enter the API token.'); $('#token-input').focus(); return; }
    setToken(token);
    const btn = $('#token-submit');
    btn.disabled = true;
    // GET / with the token: 200 for the right one, 401 for a wrong one (open reads still
    // refuse a wrong token they are sent). A read, so nothing is written; and a 2xx for the
    // right token, so the browser's console logs no failed request at each sign-in.
    const err = await api('GET', '/').then(() => null, (e) => e);
    btn.disabled = false;
    if (err && err.status === 401) return; // needLogin() put the message on the form
    if (err) flash('Could not check the token: ' + err.message, 'error');
    startApp();
  }

  function startApp() {
    $('#login').hidden = true;
    $('#app').hidden = false;
    startEvents();
    route();
  }

  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, '');
    const q = raw.indexOf('?');
    const parts = (q < 0 ? raw : raw.slice(0, q)).split('/');
    let arg = parts.slice(1).join('/');
    try { arg = decodeURIComponent(arg); } catch (_) { /* keep as is */ }
    return { name: parts[0] || 'overview', arg: arg, params: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)) };
  }

  const VIEWS = { overview: viewOverview, tasks: viewTasks, task: viewTask, workers: viewWorkers };
  const TITLES = { overview: 'Overview', tasks: 'Tasks', task: 'Task', workers: 'Workers' };

  function route() {
    if (!getToken()) { showLogin(''); return; }
    const r = parseHash();
    if (!VIEWS[r.name]) { location.replace('#/overview'); return; }
    teardown();
    for (const a of document.querySelectorAll('nav a')) {
      if (a.getAttribute('href') === '#/' + (r.name === 'task' ? 'tasks' : r.name)) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    document.title = 'After · ' + TITLES[r.name];
    const main = $('#view');
    main.replaceChildren();
    main.dataset.view = r.name;
    const ctx = { main: main, cleanups: [], onEvent: null, dead: false };
    ctx.alive = () => !ctx.dead;
    ctx.every = (ms, fn) => {
      const t = setInterval(() => { if (!document.hidden) fn(); }, ms);
      ctx.cleanups.push(() => clearInterval(t));
    };
    current = ctx;
    VIEWS[r.name](ctx, r);
    window.scrollTo(0, 0);
    if (!document.activeElement || document.activeElement === document.body) { // focus was on a removed element
      const h1 = $('h1', main);
      if (h1) { h1.tabIndex = -1; h1.focus({ preventScroll: true }); }
    }
  }

  /* ------------------------------------------------------------------ tasks view */

  function taskRow(t) {
    return h('tr', { 'data-task-id': t.id, 'data-testid': 'task-row' },
      h('td', { class: 'mono nowrap' }, h('a', { href: taskHref(t.id), 'data-testid': 'task-link' }, t.id)),
      h('td', { 'data-col': 'status', 'data-status': t.status || '', 'data-testid': 'task-status-cell' }, badge(t.status)),
      h('td', { 'data-col': 'worker' }, t.worker || ''),
      h('td', { 'data-col': 'job' }, t.job || ''),
      h('td', { 'data-col': 'date', class: 'nowrap' }, timeEl(t.date)),
      h('td', { class: 'mono nowrap' }, t.cron || ''),
      h('td', { class: 'num' }, t.priority != null ? t.priority : ''),
      h('td', { class: 'num' }, t.attempts != null ? t.attempts : ''));
  }

  function updateTaskRow(tr, t) {
    const cell = $('[data-col=status]', tr);
    if (t.status && cell.dataset.status !== t.status) {
      cell.dataset.status = t.status;
      cell.replaceChildren(badge(t.status));
    }
    if (t.worker) $('[data-col=worker]', tr).textContent = t.worker;
    if (t.job) $('[data-col=job]', tr).textContent = t.job;
    if (t.date) $('[data-col=date]', tr).replaceChildren(timeEl(t.date));
    tr.classList.remove('flash');
    void tr.offsetWidth; // restart the highlight animation
    tr.classList.add('flash');
  }

  function viewTasks(ctx, r) {
    const f = { limit: LIMITS.indexOf(r.params.get('limit')) >= 0 ? r.params.get('limit') : '50' };
    for (const k of FILTERS) f[k] = r.params.get(k) || '';
    let cursors = [null], next = null; // cursors[i] fetches page i + 1
    const rows = new Map();
    const inputs = {
      status: h('select', tid('filter-status', { value: f.status }), h('option', { value: '' }, 'any'), STATUSES.map((st) => h('option', { value: st }, st))),
      worker: h('input', tid('filter-worker', { autocomplete: 'off', value: f.worker })),
      job: h('input', tid('filter-job', { autocomplete: 'off', value: f.job })),
      from: h('input', tid('filter-from', { type: 'datetime-local', value: f.from ? toLocalInput(f.from) : '' })),
      to: h('input', tid('filter-to', { type: 'datetime-local', value: f.to ? toLocalInput(f.to) : '' })),
      limit: h('select', tid('filter-limit', { value: f.limit }), LIMITS.map((n) => h('option', { value: n }, n))),
    };

    function apply(reset) {
      if (reset) for (const k of FILTERS) inputs[k].value = '';
      Object.assign(f, { status: inputs.status.value, worker: inputs.worker.value.trim(), job: inputs.job.value.trim(),
        from: fromLocalInput(inputs.from.value), to: fromLocalInput(inputs.to.value), limit: inputs.limit.value });
      const q = new URLSearchParams();
      for (const k of FILTERS) if (f[k]) q.set(k, f[k]);
      if (f.limit !== '50') q.set('limit', f.limit);
      history.replaceState(null, '', '#/tasks' + (q.toString() ? '?' + q : '')); // bookmarkable, no re-route
      cursors = [null];
      load();
    }
    const searchIn = h('input', tid('task-search', { type: 'search', autocomplete: 'off', spellcheck: 'false', placeholder: 'task:…' }));
    const tbody = h('tbody', { id: 'tasks-body' });
    const table = h('table', tid('tasks-table', { class: 'data' }), h('caption', { class: 'sr-only' }, 'Tasks'),
      headRow(['ID', 'Status', 'Worker', 'Job', 'Due', 'Cron', 'Priority', 'Attempts']), tbody);
    const prevBtn = button('tasks-prev', '← Previous', 'secondary', () => { if (cursors.length > 1) { cursors.pop(); load(); } });
    const nextBtn = button('tasks-next', 'Next →', 'secondary', () => { if (next) { cursors.push(next); load(); } });
    const pageInfo = h('span', tid('tasks-page', { 'aria-live': 'polite' }));
    ctx.main.append(
      h('div', { class: 'row-between' }, h('h1', {}, 'Tasks'), button('tasks-refresh', 'Refresh', 'secondary', () => load())),
      h('form', tid('tasks-filter', { class: 'filters card', 'aria-label': 'Filter tasks', onsubmit: (ev) => { ev.preventDefault(); apply(false); } }),
        field('Status', inputs.status), field('Worker', inputs.worker), field('Job', inputs.job),
        field('Due from', inputs.from), field('Due to', inputs.to), field('Per page', inputs.limit),
        h('div', { class: 'field-actions' }, h('button', tid('filter-apply', { type: 'submit' }), 'Apply'),
          button('filter-reset', 'Reset', 'secondary', () => apply(true)))),
      h('form', {
        class: 'search', role: 'search', 'aria-label': 'Find a task by id',
        onsubmit: (ev) => {
          ev.preventDefault();
          const v = searchIn.value.trim();
          if (v) location.hash = taskHref(v.indexOf(':') < 0 ? 'task:' + v : v);
        },
      }, field('Find task by id', searchIn), h('button', tid('task-search-go', { type: 'submit' }), 'Open')),
      h('div', { class: 'table-wrap' }, table),
      h('div', { class: 'pager' }, prevBtn, pageInfo, nextBtn));
    const emptyRow = (text) => h('tr', { class: 'empty', 'data-testid': 'tasks-empty' }, h('td', { colspan: '8' }, text));

    async function load() {
      const q = new URLSearchParams();
      for (const k of FILTERS) if (f[k]) q.set(k, f[k]);
      q.set('limit', f.limit);
      if (cursors[cursors.length - 1]) q.set('cursor', cursors[cursors.length - 1]);
      table.setAttribute('aria-busy', 'true');
      try {
        const data = await api('GET', '/tasks?' + q);
        if (!ctx.alive()) return;
        const tasks = (data && data.tasks) || [];
        rows.clear();
        tbody.replaceChildren(...tasks.map((t) => {
          const tr = taskRow(rowData(t));
          rows.set(tr.dataset.taskId, tr);
          return tr;
        }));
        if (!tasks.length) tbody.append(emptyRow('No tasks match.'));
        next = (data && data.next) || null;
      } catch (e) {
        if (!ctx.alive()) return;
        showError(e);
        tbody.replaceChildren(emptyRow('Could not load tasks: ' + e.message));
      } finally {
        table.removeAttribute('aria-busy');
        prevBtn.disabled = cursors.length <= 1;
        nextBtn.disabled = !next;
        pageInfo.textContent = 'Page ' + cursors.length;
      }
    }

    // Live: known rows change in place; new matching tasks appear on top of the first page.
    ctx.onEvent = (ev) => {
      const t = rowData(ev);
      const gone = ev.deleted || t.status === 'deleted';
      const tr = rows.get(t.id);
      if (tr) { if (gone) tr.classList.add('gone'); else updateTaskRow(tr, t); return; }
      if (cursors.length !== 1 || gone || !matchesFilter(t, f)) return;
      const row = taskRow(t);
      row.classList.add('flash');
      rows.set(t.id, row);
      const empty = $('tr.empty', tbody);
      if (empty) empty.remove();
      tbody.prepend(row);
    };
    load();
  }

  /* ------------------------------------------------------------------ one task */

  function viewTask(ctx, r) {
    const id = r.arg, path = '/tasks/' + enc(id);
    let task = null;
    const statusEl = h('span', tid('task-status'));
    const body = h('div', tid('task-body'), h('p', { class: 'muted' }, 'Loading…'));
    const dateIn = h('input', tid('reschedule-date', { type: 'datetime-local', required: true, value: toLocalInput(new Date(Date.now() + 5 * 60000)) }));
    const cancelBtn = button('task-cancel', 'Cancel task', 'danger', () => act('Cancel task ' + id + '?', 'Cancel task',
      () => api('POST', path + '/cancel'), 'Cancel requested'));
    const rerunBtn = button('task-rerun', 'Rerun now', 'secondary', () => act('Run task ' + id + ' again now?', 'Rerun',
      () => api('POST', path + '/reschedule', { date: new Date().toISOString() }), 'Rescheduled to now'));
    const deleteBtn = button('task-delete', 'Delete', 'danger', async () => {
      if (await act('Delete task ' + id + '? This cannot be undone.', 'Delete', () => api('DELETE', path), 'Deleted ' + id, false)) location.hash = '#/tasks';
    });
    const reschedBtn = h('button', tid('task-reschedule', { type: 'submit', class: 'secondary' }), 'Reschedule');
    const buttons = [cancelBtn, rerunBtn, deleteBtn, reschedBtn];

    function setButtons() {
      for (const b of buttons) b.disabled = !task;
      if (task) cancelBtn.disabled = NOT_CANCELABLE.has(task.status);
    }

    /** Confirm (when asked), run fn, report; resolves true on success. */
    async function act(question, okLabel, fn, done, reload) {
      if (question && !(await confirmDialog(question, okLabel))) return false;
      for (const b of buttons) b.disabled = true;
      try {
        await fn();
        flash(done, 'ok');
        if (reload !== false && ctx.alive()) await load();
        return true;
      } catch (e) {
        showError(e);
        return false;
      } finally {
        if (ctx.alive()) setButtons();
      }
    }
    const reschedForm = h('form', {
      class: 'inline-form', 'aria-label': 'Reschedule',
      onsubmit: (ev) => {
        ev.preventDefault();
        const iso = fromLocalInput(dateIn.value);
        if (!iso) { flash('Pick a date to reschedule to.', 'error'); dateIn.focus(); return; }
        act(null, null, () => api('POST', path + '/reschedule', { date: iso }), 'Rescheduled to ' + fmtDate(iso));
      },
    }, field('New due date', dateIn), reschedBtn);
    ctx.main.append(
      h('p', {}, h('a', { href: '#/tasks' }, '← All tasks')),
      h('div', { class: 'row-between' }, h('h1', { class: 'task-title' }, 'Task ', h('code', {}, id)), statusEl),
      h('section', { class: 'card actions', 'aria-label': 'Actions' }, cancelBtn, rerunBtn, deleteBtn, reschedForm),
      body);
    setButtons();
    const section = (title, sid, ...kids) => h('section', { class: 'card', id: sid, 'aria-label': title }, h('h2', {}, title), kids);
    const code = (testid, text) => h('pre', { class: 'code', 'data-testid': testid, tabindex: '0' }, text);

    function render(t, hist) {
      task = t;
      statusEl.dataset.status = t.status || '';
      statusEl.replaceChildren(badge(t.status));
      setButtons();
      const jsonOpen = $('#task-json-details', body) ? $('#task-json-details', body).open : true;
      const job = t.job || {}, retry = t.retry, mis = t.misfire;
      const kv = [
        ['Worker', t.worker], ['Job', job.name],
        ['Arguments', job.arguments && job.arguments.length ? JSON.stringify(job.arguments) : null],
        ['Keyword arguments', job.kwargs && Object.keys(job.kwargs).length ? JSON.stringify(job.kwargs) : null],
        ['Due', t.date ? [timeEl(t.date), h('span', { class: 'muted' }, ' (' + relTime(t.date) + ')')] : null], ['Cron', t.cron ? t.cron + ' (' + (t.timezone || 'UTC') + ')' : null],
        ['Priority', t.priority], ['Attempts', t.attempts],
        ['Timeout', t.timeout != null ? t.timeout + ' s' : null], ['Expires', timeEl(t.expires)],
        ['Retry', !retry ? null : !retry.max ? 'none' : 'up to ' + retry.max + ' × ' + (retry.backoff || 'fixed') + ', delay ' + retry.delay + ' s'],
        ['Misfire', mis ? mis.policy + (mis.grace != null ? ', grace ' + mis.grace + ' s' : '') : null],
        ...(window.AfterCalendar ? window.AfterCalendar.rows(t, timeEl) : []), // calendar.js: jitter, excluded days
        ['Revision', t._rev],
      ].filter((x) => x[1] != null && x[1] !== '');
      const parts = [], side = []; // side: a second column on wide screens
      if (t.notice) parts.push(h('p', { class: 'notice', role: 'status', 'data-testid': 'task-notice' }, t.notice));
      if (window.AfterPause) parts.push(window.AfterPause.taskSection(t, load)); // pause.js
      parts.push(section('Summary', 'task-summary', h('dl', { class: 'kv' }, kv.map((x) => [h('dt', {}, x[0]), h('dd', {}, x[1])]))));
      const pg = t.progress;
      if (pg && pg.total) {
        parts.push(section('Progress', 'task-progress-section',
          h('progress', { 'data-testid': 'task-progress', max: pg.total, value: pg.done, 'aria-label': 'Progress' }),
          h('span', { class: 'muted' }, ' ' + pg.done + ' / ' + pg.total + ' (' + Math.round(100 * pg.done / pg.total) + '%)')));
      }
      if (t.error) {
        parts.push(section('Error', 'task-error-section',
          h('p', { class: 'error-text', 'data-testid': 'task-error' }, h('strong', {}, t.error.type || 'Error'), ': ', t.error.message || ''),
          t.error.traceback ? code('task-traceback', t.error.traceback) : null));
      }
      if (t.result != null) parts.push(section('Result', 'task-result-section', code('task-result', json(t.result))));
      if (t.next_runs && t.next_runs.length) {
        side.push(section('Next occurrences', 'task-next-runs-section', h('ol', { 'data-testid': 'task-next-runs' },
          t.next_runs.map((d, i) => h('li', {}, timeEl(d),
            h('span', { class: 'muted' }, ' ' + relTime(d) + (window.AfterCalendar ? window.AfterCalendar.runNote(t, i) : '')))))));
      }
      const deps = window.AfterUI && window.AfterUI.dependencies; // deps.js
      if (deps) side.push(deps(t, { h, badge, section, taskHref }));
      if (t.runs && t.runs.length) { // a cron task's past runs, newest first
        parts.push(section('Past runs', 'task-runs-section', h('div', { class: 'table-wrap' },
          h('table', { class: 'data compact', 'data-testid': 'task-runs' }, headRow(['Due', 'Started', 'Took', 'Status', 'Error']),
            h('tbody', {}, t.runs.slice().reverse().map((run) => h('tr', {},
              h('td', { class: 'nowrap' }, timeEl(run.date)), h('td', { class: 'nowrap' }, timeEl(run.started)),
              h('td', { class: 'num nowrap' }, fmtMs(Date.parse(run.finished) - Date.parse(run.started))),
              h('td', {}, badge(run.status), run.backfill ? h('span', { class: 'muted', 'data-testid': 'run-backfill' }, ' backfill') : null),
              h('td', { class: run.error ? 'err-cell' : 'muted', title: run.error && run.error.message ? run.error.message : '' },
                run.error ? run.error.message || run.error.reason || 'error' : '—'))))))));
      }
      // Sections of the schedule controls' own files (hooks.js, ...): each returns one or null.
      const extra = (typeof window !== 'undefined' && window.AfterUI && window.AfterUI.taskSections) || [];
      extra.forEach((f) => { const el = f(t, { h, section, timeEl, badge, headRow }); if (el) parts.push(el); });
      const overlap = window.AfterOverlap && window.AfterOverlap.panel(t, { api, flash, showError, reload: load }); // after/ui/overlap.js
      if (overlap) side.push(overlap);
      if (t.log && t.log.length) {
        const pre = code('task-log', t.log.join('\n'));
        pre.classList.add('log');
        parts.push(section('Log', 'task-log-section', pre));
        requestAnimationFrame(() => { pre.scrollTop = pre.scrollHeight; });
      }
      side.push(section('History', 'task-history-section', timeline(hist || t.history || [])));
      parts.push(h('details', { class: 'card', id: 'task-json-details', open: jsonOpen },
        h('summary', {}, 'Document (JSON)'), h('pre', tid('task-json', { class: 'code', tabindex: '0' }), json(t))));
      body.replaceChildren(h('div', { class: 'task-grid' }, h('div', { class: 'task-main' }, parts), h('div', { class: 'task-side' }, side)));
    }

    async function load() {
      try {
        const [t, hist] = await Promise.all([api('GET', path),
          api('GET', path + '/history').then((x) => x && x.history).catch(() => null)]);
        if (ctx.alive()) render(t, hist);
      } catch (e) {
        if (!ctx.alive() || e.status === 401) return;
        if (task) return showError(e);
        body.replaceChildren(h('p', { class: 'error-text', role: 'alert', 'data-testid': 'task-load-error' }, 'Could not load ' + id + ': ' + e.message));
      }
    }
    const reload = throttle(load, 300);
    ctx.cleanups.push(reload.cancel);
    ctx.onEvent = (ev) => { if (ev.id === id) reload(); };
    load();
  }

  function timeline(hist) {
    if (!hist.length) return h('p', { class: 'muted' }, 'No history.');
    return h('ol', tid('task-history', { class: 'timeline' }), hist.map((e) => {
      const extra = Object.keys(e).filter((k) => ['status', 'at', 'by'].indexOf(k) < 0)
        .map((k) => k + ': ' + (typeof e[k] === 'object' ? JSON.stringify(e[k]) : e[k])).join(', ');
      const note = [e.by ? 'by ' + e.by : '', extra].filter(Boolean).join(' · ');
      return h('li', { 'data-status': e.status || '' }, badge(e.status), ' ', timeEl(e.at),
        note ? h('div', { class: 'muted small' }, note) : null);
    }));
  }

  /* ------------------------------------------------------------------ workers view */

  function viewWorkers(ctx) {
    const rows = new Map();
    let logName = null, logTimer = null, busy = false, logBusy = false;
    const nameIn = h('input', tid('worker-name', { required: true, autocomplete: 'off', spellcheck: 'false', pattern: '[A-Za-z0-9][A-Za-z0-9_.@\\-]{0,63}' }));
    // Default 4, as `after start` and POST /workers/{name} have it.
    const concIn = h('input', tid('worker-concurrency', { type: 'number', min: '1', step: '1', value: String(DEFAULT_CONCURRENCY), required: true }));
    const jobsIn = h('input', tid('worker-jobs', { autocomplete: 'off', spellcheck: 'false', placeholder: 'package.jobs' }));
    const startBtn = h('button', tid('worker-start', { type: 'submit' }), 'Start worker');
    const tbody = h('tbody', { id: 'workers-body' });
    const remoteBody = h('tbody', { id: 'remote-workers-body' });
    const logPre = h('pre', tid('worker-log', { class: 'code log', tabindex: '0', 'aria-label': 'Worker log' }));
    const logTitle = h('h2', { id: 'worker-log-title' }, 'Log');
    const logMeta = h('p', { class: 'muted small', id: 'worker-log-meta' });
    const logPanel = h('section', tid('worker-log-panel', { class: 'card', 'aria-labelledby': 'worker-log-title', hidden: true }),
      h('div', { class: 'row-between' }, logTitle, button('worker-log-close', 'Close log', 'secondary small', () => showLog(null))),
      logMeta, logPre);
    ctx.main.append(
      h('div', { class: 'row-between' }, h('h1', {}, 'Workers'), button('workers-refresh', 'Refresh', 'secondary', () => refresh())),
      h('div', { class: 'table-wrap' }, h('table', tid('workers-table', { class: 'data' }), h('caption', { class: 'sr-only' }, 'Workers'),
        headRow(['Name', 'Host', 'State', 'Running', 'PID', 'Uptime', 'Tasks run', 'Restarts', 'Busy / slots', 'Last error', 'Actions']), tbody)),
      logPanel,
      h('section', tid('remote-workers', { 'aria-labelledby': 'remote-workers-title' }),
        h('h2', { id: 'remote-workers-title' }, 'Remote workers'),
        h('p', { class: 'muted small' }, 'Programs on any host that connect over this port with the worker protocol (POST /workers/{name}/connect). ' +
          'They start and stop on their own hosts: nothing to start or stop here. Live: it called within two heartbeat intervals.'),
        h('div', { class: 'table-wrap' }, h('table', tid('remote-workers-table', { class: 'data' }), h('caption', { class: 'sr-only' }, 'Remote workers'),
          headRow(['Name', 'Host', 'Address', 'State', 'Live', 'Last heartbeat', 'Busy / slots', 'Tasks run', 'Connected', 'Daemon', 'Last error']), remoteBody))),
      h('h2', {}, 'Start a worker'),
      h('form', { id: 'worker-start-form', class: 'grid-form card', 'aria-label': 'Start a worker', onsubmit: onStart },
        field('Name', nameIn), field('Concurrency', concIn), field('Jobs module (optional)', jobsIn, 'Python module holding the job functions'),
        h('div', { class: 'field-actions' }, startBtn)));

    /** Workers of other daemons on the database are listed too (read only: their own daemon runs them).
     * A remote worker's row is one of its sessions: one name may be connected from several hosts. */
    const rowKey = (w) => (w.remote ? 'session:' + w.session : w.here === false ? w.name + '@' + w.daemon : w.name);

    /** A remote worker's session: what tells it apart is where it calls from, when it last
     * called and whether that was recent enough (live); it has no process, log or buttons here. */
    function makeRemoteRow(w) {
      const c = {};
      const cell = (k, cls) => (c[k] = h('td', { 'data-col': k, class: cls || null }));
      const tr = h('tr', { 'data-worker': w.name, 'data-testid': 'remote-worker-row', 'data-session': w.session || '', 'data-here': String(w.here !== false) },
        h('th', { scope: 'row' }, w.name), cell('host'), cell('address'), cell('state'), cell('live'), cell('last_heartbeat', 'nowrap'),
        cell('concurrency', 'num nowrap'), cell('tasks_run', 'num'), cell('connected', 'num nowrap'), cell('daemon', 'small'), cell('last_error'));
      tr._cells = c;
      return tr;
    }

    function updateRemoteRow(tr, w) {
      const c = tr._cells, state = w.state || (w.running ? 'running' : 'stopped'), live = w.live === true;
      const dash = (v) => (v != null && v !== '' ? v : '—');
      tr.dataset.state = state;
      tr.dataset.live = String(live);
      if (c.state.dataset.state !== state) {
        c.state.dataset.state = state;
        c.state.replaceChildren(h('span', { class: 'badge', 'data-state': state }, state));
      }
      c.host.textContent = dash(w.host);
      c.address.textContent = dash(w.address);
      c.live.textContent = w.live == null ? '—' : live ? 'yes' : 'no';
      c.live.classList.toggle('error-text', w.live === false);
      c.last_heartbeat.textContent = w.last_heartbeat ? relTime(w.last_heartbeat) : '—';
      c.last_heartbeat.title = w.last_heartbeat ? fmtDate(w.last_heartbeat) : '';
      c.concurrency.textContent = dash(w.running_tasks) + ' / ' + dash(w.concurrency);
      c.tasks_run.textContent = dash(w.tasks_run);
      const since = w.connected ? Math.round((Date.now() - Date.parse(w.connected)) / 1000) : NaN;
      c.connected.textContent = isNaN(since) ? '—' : fmtDuration(Math.max(0, since));
      c.connected.title = w.connected ? fmtDate(w.connected) : '';
      c.daemon.textContent = w.here === false ? dash(w.daemon) : 'this daemon';
      const err = w.last_error;
      c.last_error.textContent = err ? String(err).slice(0, 160) : '—';
      c.last_error.title = err ? String(err) : '';
      c.last_error.classList.toggle('err-cell', !!err);
      c.last_error.classList.toggle('muted', !err);
    }

    function makeRow(w) {
      const name = w.name, remote = w.here === false, c = {};
      const cell = (k, cls) => (c[k] = h('td', { 'data-col': k, class: cls || null }));
      const logBtn = h('button', { type: 'button', class: 'secondary small', 'data-testid': 'worker-log-toggle', 'data-worker': name, 'aria-pressed': 'false', onclick: () => showLog(logName === name ? null : name) }, 'Log');
      const stopBtn = h('button', { type: 'button', class: 'danger small', 'data-testid': 'worker-stop', 'data-worker': name, onclick: () => onStop(name) }, 'Stop');
      const startBtn = h('button', { type: 'button', class: 'small', 'data-testid': 'worker-start-again', 'data-worker': name, hidden: true, onclick: () => onStartAgain(tr) }, 'Start');
      const tr = h('tr', { 'data-worker': name, 'data-testid': 'worker-row', 'data-daemon': w.daemon || '', 'data-here': String(!remote) },
        h('th', { scope: 'row' }, name), cell('host'), cell('state'), cell('running'), cell('pid', 'num'), cell('uptime', 'num nowrap'),
        cell('tasks_run', 'num'), cell('restarts', 'num'), cell('concurrency', 'num nowrap'), cell('last_error'),
        h('td', { class: 'row-actions' }, logBtn, ' ', stopBtn, startBtn));
      tr._cells = c;
      tr._remote = remote;
      if (remote) logBtn.hidden = stopBtn.hidden = startBtn.hidden = true;
      tr._logBtn = logBtn;
      tr._stopBtn = stopBtn;
      tr._startBtn = startBtn;
      return tr;
    }

    function updateRow(tr, w) {
      const c = tr._cells, state = w.state || (w.running ? 'running' : 'stopped');
      const dash = (v) => (v != null ? v : '—');
      tr.dataset.state = state;
      tr.dataset.running = String(!!w.running);
      if (c.state.dataset.state !== state) {
        c.state.dataset.state = state;
        c.state.replaceChildren(h('span', { class: 'badge', 'data-state': state }, state));
      }
      c.host.textContent = (w.host || '—') + (tr._remote ? '' : ' (this daemon)');
      c.running.textContent = w.running ? 'yes' : 'no';
      c.pid.textContent = dash(w.pid);
      c.uptime.textContent = w.running ? fmtDuration(w.uptime) : '—';
      c.tasks_run.textContent = dash(w.tasks_run);
      c.restarts.textContent = dash(w.restarts);
      c.concurrency.textContent = (w.running ? dash(w.running_tasks) : '—') + ' / ' + dash(w.concurrency);
      let err = w.last_error;
      if (err && typeof err === 'object') err = err.message || JSON.stringify(err);
      c.last_error.textContent = err ? String(err).slice(0, 160) : '—';
      c.last_error.classList.toggle('err-cell', !!err);
      c.last_error.classList.toggle('muted', !err);
      // Stopped: offer Start (with the same concurrency and jobs); otherwise Stop (backoff and
      // crashloop included: stopping ends the restarts).
      const stopped = state === 'stopped', focused = document.activeElement;
      tr._stopBtn.hidden = stopped || tr._remote;
      tr._startBtn.hidden = !stopped || tr._remote;
      if (focused === tr._stopBtn && stopped) tr._startBtn.focus(); // keep the keyboard user's place
      else if (focused === tr._startBtn && !stopped) tr._stopBtn.focus();
      tr._last = w;
      c.last_error.title = err ? String(err) : '';
      tr._logBtn.setAttribute('aria-pressed', String(logName === w.name));
      if (window.AfterPause) window.AfterPause.workerRow(tr, w, refresh); // pause.js
    }

    async function refresh() {
      if (busy) return;
      busy = true;
      try {
        const data = await api('GET', '/workers');
        if (!ctx.alive()) return;
        const all = (data && data.workers) || [], seen = new Set();
        const fill = (body, list, make, update, empty) => {
          const old = $('tr.empty', body);
          if (old) old.remove();
          list.forEach((w, i) => {
            const key = rowKey(w);
            seen.add(key);
            let tr = rows.get(key);
            if (!tr) { tr = make(w); rows.set(key, tr); }
            update(tr, w);
            // Move only when out of order: moving a node would drop keyboard focus.
            if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
          });
          if (!list.length) body.append(empty);
        };
        fill(tbody, all.filter((w) => !w.remote), makeRow, updateRow,
          h('tr', { class: 'empty', 'data-testid': 'workers-empty' }, h('td', { colspan: '11' }, 'No worker processes (start one below).')));
        fill(remoteBody, all.filter((w) => w.remote), makeRemoteRow, updateRemoteRow,
          h('tr', { class: 'empty', 'data-testid': 'remote-workers-empty' }, h('td', { colspan: '11' }, 'No remote worker is connected.')));
        for (const [key, tr] of rows) if (!seen.has(key)) { tr.remove(); rows.delete(key); }
      } catch (e) {
        if (ctx.alive()) showError(e);
      } finally {
        busy = false;
      }
    }

    /** Show the log tail of one worker (null: hide); polls every 2 s while shown. */
    function showLog(name) {
      clearInterval(logTimer);
      logName = name;
      for (const tr of rows.values()) if (tr._logBtn) tr._logBtn.setAttribute('aria-pressed', String(tr.dataset.worker === name));
      logPanel.hidden = !name;
      if (!name) { logPre.textContent = ''; delete logPanel.dataset.worker; return; }
      logPanel.dataset.worker = name;
      logTitle.textContent = 'Log — ' + name;
      logPre.textContent = 'Loading…';
      logMeta.textContent = '';
      fetchLog();
      logTimer = setInterval(() => { if (!document.hidden) fetchLog(); }, LOG_POLL_MS);
    }
    ctx.cleanups.push(() => clearInterval(logTimer));

    async function fetchLog() {
      const name = logName;
      if (logBusy || !name) return;
      logBusy = true;
      try {
        const txt = await api('GET', '/workers/' + enc(name) + '/log?lines=200', undefined, { text: true });
        if (!ctx.alive() || logName !== name) return;
        const atBottom = logPre.scrollHeight - logPre.scrollTop - logPre.clientHeight < 24;
        if (logPre.textContent !== (txt || '(empty)')) {
          logPre.textContent = txt || '(empty)';
          if (atBottom) logPre.scrollTop = logPre.scrollHeight;
        }
        logMeta.textContent = 'Updated ' + hhmmss(new Date()) + ' · refreshes every 2 s';
      } catch (e) {
        if (ctx.alive() && logName === name) logMeta.textContent = 'Could not load the log: ' + e.message;
      } finally {
        logBusy = false;
      }
    }

    async function onStop(name) {
      if (!(await confirmDialog('Stop worker ' + name + '?', 'Stop worker'))) return;
      await api('DELETE', '/workers/' + enc(name)).then(() => flash('Stopped ' + name, 'ok'), showError);
      if (ctx.alive()) refresh();
    }

    /** Start a stopped worker again, as it was (same concurrency and jobs modules). */
    async function onStartAgain(tr) {
      const w = tr._last || {}, name = tr.dataset.worker;
      tr._startBtn.disabled = true;
      await api('POST', '/workers/' + enc(name), { concurrency: w.concurrency || DEFAULT_CONCURRENCY, jobs: w.jobs_modules || [] })
        .then(() => flash('Started ' + name, 'ok'), showError);
      tr._startBtn.disabled = false;
      if (ctx.alive()) refresh();
    }

    async function onStart(ev) {
      ev.preventDefault();
      const name = nameIn.value.trim();
      nameIn.removeAttribute('aria-invalid');
      if (!name || !nameIn.checkValidity()) { nameIn.setAttribute('aria-invalid', 'true'); nameIn.reportValidity(); return; }
      startBtn.disabled = true;
      await api('POST', '/workers/' + enc(name), { concurrency: Number(concIn.value) || DEFAULT_CONCURRENCY, jobs: jobsIn.value.trim() || null })
        .then(() => { flash('Started ' + name, 'ok'); nameIn.value = ''; }, showError);
      startBtn.disabled = false;
      if (ctx.alive()) refresh();
    }
    ctx.every(WORKERS_POLL_MS, refresh);
    refresh();
  }

  /* ------------------------------------------------------------------ overview + charts */

  /** Line or bar chart of [[epoch_seconds, value], ...] over (at least) the last hour. */
  function chart(points, opt) {
    const W = 480, H = 160, L = 52, R = 10, T = 10, B = 24, pw = W - L - R, ph = H - T - B;
    const pts = (points || []).filter((p) => Array.isArray(p) && isFinite(p[0]) && isFinite(p[1]));
    const x1 = Math.max(Date.now() / 1000, pts.length ? pts[pts.length - 1][0] + 60 : 0);
    const x0 = Math.min(x1 - 3600, pts.length ? pts[0][0] : x1);
    const ymax = niceMax(Math.max(0, ...pts.map((p) => p[1])));
    const X = (t) => L + (t - x0) / (x1 - x0) * pw, Y = (v) => T + ph - (v / ymax) * ph;
    const svg = s('svg', { viewBox: '0 0 ' + W + ' ' + H, class: 'chart', role: 'img', 'aria-label': opt.label + ': ' + opt.summary, 'data-testid': opt.testid });
    for (const frac of [0, 0.5, 1]) {
      svg.append(s('line', { class: 'grid', x1: L, x2: W - R, y1: Y(ymax * frac), y2: Y(ymax * frac) }),
        s('text', { class: 'axis', x: L - 6, y: Y(ymax * frac) + 4, 'text-anchor': 'end' }, opt.fmt(ymax * frac)));
    }
    for (const [t, anchor] of [[x0, 'start'], [(x0 + x1) / 2, 'middle'], [x1, 'end']]) {
      svg.append(s('text', { class: 'axis', x: X(t), y: H - 6, 'text-anchor': anchor }, hhmm(new Date(t * 1000))));
    }
    if (!pts.length) return append(svg, [s('text', { class: 'axis', x: L + pw / 2, y: T + ph / 2, 'text-anchor': 'middle' }, 'No data in the last hour')]);
    const tip = (p) => s('title', {}, hhmm(new Date(p[0] * 1000)) + ' — ' + opt.fmt(p[1]));
    if (opt.kind === 'bar') {
      const bw = Math.max(1.5, (pw / 60) * 0.75);
      for (const p of pts) {
        const y = Y(p[1]);
        svg.append(s('rect', { class: 'bar', x: Math.min(X(p[0]), W - R - bw).toFixed(1), y: y.toFixed(1), width: bw.toFixed(1), height: Math.max(0, T + ph - y).toFixed(1) }, tip(p)));
      }
    } else {
      svg.append(s('path', { class: 'line', d: pts.map((p, i) => (i ? 'L' : 'M') + X(p[0]).toFixed(1) + ' ' + Y(p[1]).toFixed(1)).join(' ') }));
      for (const p of pts) svg.append(s('circle', { class: 'point', cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: 2.5 }, tip(p)));
    }
    return svg;
  }

  /** The next 24 hours, one lane per worker, one linked dot per task. */
  function timelineChart(items) {
    const now = Date.now(), span = 24 * 3600 * 1000;
    const names = Array.from(new Set(items.map((i) => i.worker || '?'))).sort();
    const lanes = names.slice(0, 10).concat(names.length > 10 ? ['other'] : []);
    const W = 900, L = 120, R = 16, T = 8, LH = 26, B = 26, H = T + Math.max(1, lanes.length) * LH + B, pw = W - L - R;
    const X = (ms) => L + Math.min(Math.max((ms - now) / span, 0), 1) * pw;
    const laneY = (w) => { const i = names.indexOf(w || '?'); return T + Math.min(i, 10) * LH + LH / 2; };
    const svg = s('svg', { viewBox: '0 0 ' + W + ' ' + H, class: 'chart timeline-chart', role: 'group', 'aria-label': 'Tasks due in the next 24 hours', 'data-testid': 'timeline' });
    lanes.forEach((n, i) => {
      const y = T + i * LH + LH / 2;
      svg.append(s('line', { class: 'grid', x1: L, x2: W - R, y1: y, y2: y }),
        s('text', { class: 'axis', x: L - 8, y: y + 4, 'text-anchor': 'end' }, n.length > 16 ? n.slice(0, 15) + '…' : n));
    });
    const first = new Date(now);
    first.setMinutes(0, 0, 0);
    for (let t = first.getTime() + 3600000; t <= now + span; t += 3600000) {
      const d = new Date(t);
      if (d.getHours() % 3) continue;
      svg.append(s('line', { class: 'tick', x1: X(t), x2: X(t), y1: T, y2: H - B }), s('text', { class: 'axis', x: X(t), y: H - 8, 'text-anchor': 'middle' }, hhmm(d)));
    }
    svg.append(s('line', { class: 'now', x1: L, x2: L, y1: T, y2: H - B }), s('text', { class: 'axis', x: L, y: H - 8, 'text-anchor': 'start' }, 'now'));
    if (!items.length) svg.append(s('text', { class: 'axis', x: L + pw / 2, y: T + LH / 2 + 4, 'text-anchor': 'middle' }, 'Nothing due in the next 24 hours'));
    for (const it of items) {
      const ms = Date.parse(it.date);
      if (isNaN(ms)) continue;
      svg.append(s('a', { href: taskHref(it.id), 'data-testid': 'timeline-item', 'data-task-id': it.id },
        s('circle', { class: 'dot', cx: X(ms).toFixed(1), cy: laneY(it.worker), r: 6, 'data-status': it.status || '' }),
        s('title', {}, fmtDate(it.date) + ' — ' + (it.job || '?') + ' on ' + (it.worker || '?') + ' (' + (it.status || '?') + ')')));
    }
    return svg;
  }

  function viewOverview(ctx) {
    const info = h('p', tid('server-info', { class: 'muted' }), 'Loading…');
    const counts = h('ul', tid('counts', { class: 'counts' }));
    const lagFig = h('figure', { class: 'card chart-card', id: 'chart-lag-card' });
    const tputFig = h('figure', { class: 'card chart-card', id: 'chart-throughput-card' });
    const tlWrap = h('div', { class: 'chart-scroll' });
    const upcoming = h('div', { id: 'upcoming-list' });
    ctx.main.append(
      h('div', { class: 'row-between' }, h('h1', {}, 'Overview'), button('overview-refresh', 'Refresh', 'secondary', () => load())),
      info,
      h('section', { 'aria-labelledby': 'counts-title' }, h('h2', { id: 'counts-title' }, 'Tasks by status'), counts),
      h('section', { class: 'charts', 'aria-label': 'Last hour' }, lagFig, tputFig),
      h('section', { class: 'card', 'aria-labelledby': 'timeline-title' }, h('h2', { id: 'timeline-title' }, 'Next 24 hours'), tlWrap, upcoming));
    let busy = false;
    async function load() {
      if (busy) return;
      busy = true;
      try {
        const root = api('GET', '/').catch((e) => { if (e.status === 401) throw e; return null; });
        const [r, st] = await Promise.all([root, api('GET', '/stats')]);
        if (ctx.alive()) render(r, st || {});
      } catch (e) {
        if (ctx.alive()) showError(e);
      } finally {
        busy = false;
      }
    }

    function render(root, st) {
      if (root) {
        const ok = root.couchdb && root.couchdb.reachable;
        info.replaceChildren((root.name || 'after') + ' ' + (root.version || '') + ' · up ' + fmtDuration(root.uptime) + ' · CouchDB ',
          h('span', { class: ok ? 'ok-text' : 'error-text', 'data-testid': 'couchdb-state' }, ok ? 'reachable' : 'unreachable'));
      }
      const c = st.counts || {};
      const keys = STATUSES.concat(Object.keys(c).filter((k) => STATUSES.indexOf(k) < 0));
      const total = keys.reduce((a, k) => a + (Number(c[k]) || 0), 0);
      const card = (href, testid, n, label, status) => h('li', {}, h('a', { class: 'count', href: href, 'data-status': status, 'data-testid': testid },
        h('strong', {}, String(n)), h('span', {}, label)));
      counts.replaceChildren(...keys.map((k) => card('#/tasks?status=' + enc(k), 'count-' + k, c[k] || 0, k, k)),
        card('#/tasks', 'count-total', total, 'total', null));
      const lag = st.lag_ms || [], tp = st.throughput || [], up = st.upcoming || [];
      const lagSummary = lag.length ? 'latest ' + fmtMs(lag[lag.length - 1][1]) + ', max ' + fmtMs(Math.max(...lag.map((p) => p[1]))) : 'no data';
      lagFig.replaceChildren(h('figcaption', {}, h('strong', {}, 'Fire lag (p50)'), h('span', { class: 'muted' }, ' — ' + lagSummary)),
        chart(lag, { label: 'Fire lag p50 over the last hour', summary: lagSummary, fmt: fmtMs, kind: 'line', testid: 'chart-lag' }));
      const tpSummary = tp.reduce((a, p) => a + (Number(p[1]) || 0), 0) + ' started in the last hour';
      tputFig.replaceChildren(h('figcaption', {}, h('strong', {}, 'Throughput'), h('span', { class: 'muted' }, ' — ' + tpSummary)),
        chart(tp, { label: 'Tasks started per minute over the last hour', summary: tpSummary, fmt: (v) => String(Math.round(v * 10) / 10), kind: 'bar', testid: 'chart-throughput' }));
      tlWrap.replaceChildren(timelineChart(up));
      const wasOpen = $('details', upcoming) ? $('details', upcoming).open : false;
      upcoming.replaceChildren(h('details', { open: wasOpen }, h('summary', {}, 'As a list (' + up.length + ')'),
        h('div', { class: 'table-wrap' }, h('table', { class: 'data' }, headRow(['Due', 'Task', 'Worker', 'Job', 'Status']),
          h('tbody', {}, up.map((it) => h('tr', { 'data-task-id': it.id },
            h('td', { class: 'nowrap' }, timeEl(it.date)), h('td', { class: 'mono nowrap' }, h('a', { href: taskHref(it.id) }, it.id)),
            h('td', {}, it.worker || ''), h('td', {}, it.job || ''), h('td', {}, badge(it.status)))))))));
    }
    const soon = throttle(load, 2000); // task events change the counts: refresh, at most every 2 s
    ctx.cleanups.push(soon.cancel);
    ctx.onEvent = soon;
    ctx.every(OVERVIEW_POLL_MS, load);
    load();
  }

  /* ------------------------------------------------------------------ start */

  function init() {
    // What the views in other files (pause.js) borrow.
    window.AfterKit = { api: api, h: h, flash: flash, showError: showError, confirmDialog: confirmDialog, timeEl: timeEl };
    $('#login-form').addEventListener('submit', onLogin);
    $('#logout').addEventListener('click', () => { setToken(''); showLogin('Signed out.'); });
    $('#skip-link').addEventListener('click', () => $('#view').focus());
    window.addEventListener('hashchange', route);
    window.addEventListener('online', () => { if (getToken() && sse.state !== 'open') startEvents(); });
    if (getToken()) startApp(); else showLogin('');
  }

  if (typeof document !== 'undefined') {
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
    else init();
  } else if (typeof module !== 'undefined') { // Node: the pure helpers, for unit tests
    module.exports = { createSseParser, matchesFilter, rowData, niceMax, fmtDuration, fmtMs, relTime, toLocalInput, fromLocalInput };
  }
})();
