/* Pause and resume in the admin UI: a task's pause (who, when, why) with Pause / Resume on
 * its page, and a worker name's pause in the workers list with Pause / Resume on each row.
 * app.js calls window.AfterPause at two hooks (the task page's render, a worker row's
 * update) and lends its helpers as window.AfterKit: this file owns nothing else. */
(function () {
  'use strict';
  const enc = encodeURIComponent;
  const kit = () => window.AfterKit;

  /** "paused by cli at 12:00 (3 min ago): why" as nodes. */
  function said(p) {
    const k = kit();
    return [h('strong', {}, 'Paused'), ' by ', h('span', { 'data-testid': 'paused-by' }, p.by || '?'),
      p.at ? [' at ', k.timeEl(p.at)] : '', p.note ? [': ', h('span', { 'data-testid': 'paused-note' }, p.note)] : ''];
  }

  function h(tag, attrs, ...kids) { return kit().h(tag, attrs, ...kids); }

  /** Ask for a note (optional), then POST the pause; true when done. */
  async function pause(path, what) {
    const k = kit();
    const note = window.prompt('Pause ' + what + '? A note (why), shown with the pause — optional:', '');
    if (note === null) return false;
    try {
      await k.api('POST', path + '/pause', note.trim() ? { note: note.trim() } : undefined);
      k.flash('Paused ' + what, 'ok');
      return true;
    } catch (e) { k.showError(e); return false; }
  }

  async function resume(path, what) {
    const k = kit();
    try {
      await k.api('POST', path + '/resume');
      k.flash('Resumed ' + what, 'ok');
      return true;
    } catch (e) { k.showError(e); return false; }
  }

  const FINISHED = new Set(['done', 'err', 'canceled']);

  /** The task page's pause card: its state, and Pause or Resume. */
  function taskSection(t, reload) {
    const path = '/tasks/' + enc(t._id), p = t.paused;
    const btn = p
      ? h('button', { type: 'button', id: 'task-resume', 'data-testid': 'task-resume', class: 'small' }, 'Resume')
      : h('button', { type: 'button', id: 'task-pause', 'data-testid': 'task-pause', class: 'secondary small', disabled: FINISHED.has(t.status) }, 'Pause');
    btn.addEventListener('click', async () => {
      btn.disabled = true;
      if (await (p ? resume(path, 'task ' + t._id) : pause(path, 'task ' + t._id))) reload();
      else btn.disabled = false;
    });
    const text = p ? said(p) : [h('span', { class: 'muted' }, 'Not paused.')];
    return h('section', { class: 'card' + (p ? ' notice' : ''), id: 'task-pause-section', 'data-testid': 'task-pause-section', 'data-paused': String(!!p), 'aria-label': 'Pause' },
      h('p', { class: 'row-between' }, h('span', {}, ...text), btn),
      p ? h('p', { class: 'muted small' }, 'It does not start while paused; a run under way finishes. On resume, what came due follows its misfire policy.') : '');
  }

  /** A worker row (local or another daemon's): a "paused" badge by its name, and Pause or Resume. */
  function workerRow(tr, w, refresh) {
    const p = w.paused, name = w.name;
    tr.dataset.paused = String(!!p);
    const th = tr.querySelector('th');
    let badge = tr.querySelector('[data-testid=worker-paused]');
    if (!badge && th) {
      badge = h('span', { class: 'badge', 'data-state': 'paused', 'data-testid': 'worker-paused', hidden: true }, 'paused');
      th.append(' ', badge);
    }
    if (badge) {
      badge.hidden = !p;
      badge.title = p ? 'paused by ' + (p.by || '?') + (p.at ? ' at ' + p.at : '') + (p.note ? ': ' + p.note : '') : '';
    }
    const cell = tr.querySelector('.row-actions');
    if (!cell) return;
    let btn = tr._pauseBtn;
    if (!btn) {
      btn = tr._pauseBtn = h('button', { type: 'button', class: 'secondary small', 'data-testid': 'worker-pause-toggle', 'data-worker': name });
      btn.addEventListener('click', async () => {
        const path = '/workers/' + enc(name), what = 'worker name ' + name + ' (on every daemon)';
        btn.disabled = true;
        const ok = await (tr.dataset.paused === 'true' ? resume(path, what) : pause(path, what));
        btn.disabled = false;
        if (ok) refresh();
      });
      cell.append(' ', btn);
    }
    btn.textContent = p ? 'Resume' : 'Pause';
    btn.setAttribute('aria-label', (p ? 'Resume ' : 'Pause ') + name);
  }

  window.AfterPause = { taskSection: taskSection, workerRow: workerRow };
})();
