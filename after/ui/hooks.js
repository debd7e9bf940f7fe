/* After UI — completion webhooks: the "Deliveries" table of a task's detail view.
 * Loaded before app.js; app.js calls every function in AfterUI.taskSections with the task and
 * its rendering helpers, and shows what each returns (a section element, or null).
 * One row per delivery recorded in the task's `deliveries` (newest first): URL, the outcome
 * it told of, its state (sending, delivered, failed), the HTTP status, attempts, when, error.
 */
(function () {
  'use strict';

  /** A delivery's state, coloured like the task status it resembles. */
  const LOOK = { delivered: 'done', failed: 'err', sending: 'scheduled' };

  function deliveries(t, ui) {
    const list = Array.isArray(t.deliveries) ? t.deliveries.filter((d) => d && typeof d === 'object') : [];
    if (!list.length) return null;
    const h = ui.h;
    const rows = list.slice().reverse().map((d) => h('tr', { 'data-testid': 'delivery-row', 'data-state': d.state || '' },
      h('td', { class: 'err-cell', style: 'color: inherit', title: String(d.url || '') }, String(d.url || '')),
      h('td', {}, ui.badge(d.outcome)),
      h('td', {}, h('span', { class: 'badge', 'data-status': LOOK[d.state] || '', 'data-testid': 'delivery-state' }, String(d.state || '?'))),
      h('td', { class: 'num', 'data-testid': 'delivery-status' }, d.status != null ? String(d.status) : '—'),
      h('td', { class: 'num', 'data-testid': 'delivery-attempts' }, String(d.attempts != null ? d.attempts : '')),
      h('td', { class: 'nowrap' }, ui.timeEl(d.at)),
      h('td', { class: d.error ? 'err-cell' : 'muted', title: d.error ? String(d.error) : '' }, d.error ? String(d.error) : '—')));
    return ui.section('Webhook deliveries', 'task-deliveries-section', h('div', { class: 'table-wrap' },
      h('table', { class: 'data compact', 'data-testid': 'task-deliveries' },
        ui.headRow(['URL', 'Outcome', 'State', 'HTTP', 'Attempts', 'At', 'Error']), h('tbody', {}, rows))));
  }

  const root = typeof window !== 'undefined' ? window : globalThis;
  root.AfterUI = root.AfterUI || { taskSections: [] };
  root.AfterUI.taskSections.push(deliveries);
})();
