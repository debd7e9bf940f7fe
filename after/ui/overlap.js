/* After — browser admin UI: overlap and backfill on a cron task's detail (#/task/<id>).
 * Loaded before app.js; app.js calls AfterOverlap.panel(task, tools) when it renders a task
 * and shows its section (null for a one-shot task or a child occurrence).
 * Backfill: POST /tasks/{id}/backfill {from, to}; the answer's count is flashed.
 */
(function () {
  'use strict';

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) {
      const v = attrs[k];
      if (v == null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat()) if (kid != null) e.append(typeof kid === 'object' ? kid : String(kid));
    return e;
  }

  /** "2026-11-20T10:00" (a datetime-local input, local time) as ISO 8601 UTC; '' if empty. */
  function isoOf(local) {
    if (!local) return '';
    const d = new Date(local);
    return isNaN(d.getTime()) ? '' : d.toISOString();
  }

  function localOf(date) {
    const p = (n) => String(n).padStart(2, '0');
    return date.getFullYear() + '-' + p(date.getMonth() + 1) + '-' + p(date.getDate()) + 'T' + p(date.getHours()) + ':' + p(date.getMinutes());
  }

  /** The section shown last, kept across renders of the same task: a re-render (every change
   * of the task, live) must not reset a range being typed in. */
  let kept = null;

  function describe(t, overlapP, pendingP) {
    overlapP.replaceChildren('Overlap: ', el('strong', {}, t.overlap || 'wait'),
      t.replacing ? ' — replacing the running occurrence with ' + t.replacing.occurrence : '');
    const pending = (t.backfill || []).length;
    pendingP.textContent = pending ? pending + ' occurrence(s) pending backfill, next ' + t.backfill[0] : 'No backfill pending.';
  }

  /** The "Overlap and backfill" section of task ``t``; tools: {api, flash, showError, reload}. */
  function panel(t, tools) {
    if (!t || !t.cron || t.parent) return null;
    if (kept && kept.id === t._id && kept.section.isConnected) {
      kept.tools = tools;
      describe(t, kept.overlapP, kept.pendingP);
      return kept.section;
    }
    const state = { id: t._id, tools };
    const now = new Date();
    const fromIn = el('input', { type: 'datetime-local', id: 'backfill-from', 'data-testid': 'backfill-from', required: true });
    const toIn = el('input', { type: 'datetime-local', id: 'backfill-to', 'data-testid': 'backfill-to', required: true });
    fromIn.value = localOf(new Date(now.getTime() - 86400000));
    toIn.value = localOf(now);
    const submit = el('button', { type: 'submit', class: 'secondary', id: 'backfill-submit', 'data-testid': 'backfill-submit' }, 'Backfill');
    const form = el('form', {
      class: 'inline-form', 'aria-label': 'Backfill', 'data-testid': 'backfill-form',
      onsubmit: async (ev) => {
        ev.preventDefault();
        const from = isoOf(fromIn.value), to = isoOf(toIn.value);
        if (!from || !to) { state.tools.flash('Pick both ends of the range to backfill.', 'error'); return; }
        submit.disabled = true;
        try {
          const res = await state.tools.api('POST', '/tasks/' + encodeURIComponent(t._id) + '/backfill', { from, to });
          state.tools.flash(res.count + ' occurrence(s) to backfill (' + res.pending + ' pending)', 'ok');
          state.tools.reload();
        } catch (e) {
          state.tools.showError(e);
        } finally {
          submit.disabled = false;
        }
      },
    },
    el('div', { class: 'field' }, el('label', { for: 'backfill-from' }, 'From'), fromIn),
    el('div', { class: 'field' }, el('label', { for: 'backfill-to' }, 'To'), toIn), submit);
    const overlapP = el('p', { 'data-testid': 'task-overlap' });
    const pendingP = el('p', { class: 'muted', 'data-testid': 'backfill-pending' });
    describe(t, overlapP, pendingP);
    const section = el('section', { class: 'card', id: 'task-overlap-section', 'aria-label': 'Overlap and backfill' },
      el('h2', {}, 'Overlap and backfill'), overlapP, pendingP, form);
    kept = Object.assign(state, { section, overlapP, pendingP });
    return section;
  }

  window.AfterOverlap = { panel };
})();
