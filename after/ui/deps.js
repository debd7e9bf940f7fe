/* After — browser admin UI: task dependencies (issue 16, point 1).
 * The "Dependencies" card of a task's view: the tasks it waits for (its `after`), each a
 * link with its state — what it still waits on (`waiting_on`, computed by GET /tasks/{id}),
 * or, once claimed, the outcome the job saw (`dependencies`) — and what a failed one does
 * (`after_failed`). app.js calls AfterUI.dependencies(task, helpers) when it renders a task.
 */
(function () {
  'use strict';

  /** The state shown for one dependency: its outcome once the task was claimed, else
   * "waiting" while GET /tasks/{id} lists it in waiting_on, else "done". */
  function depState(t, id) {
    const seen = (t.dependencies || {})[id];
    if (seen && seen.status) return seen.status;
    if ((t.waiting_on || []).indexOf(id) >= 0) return 'waiting';
    return t.waiting_on ? 'done' : null;
  }

  function dependencies(t, ui) {
    const ids = Array.isArray(t.after) ? t.after : [];
    if (!ids.length) return null;
    const h = ui.h;
    const waiting = t.waiting_on || [];
    const summary = waiting.length
      ? 'Waits on ' + waiting.length + ' of ' + ids.length + ' before it can run.'
      : (t.dependencies ? 'Its dependencies had finished when it was claimed.' : 'Every dependency is done.');
    const onFail = t.after_failed === 'run' ? 'runs anyway' : 'ends err (reason dependency)';
    return ui.section('Dependencies', 'task-deps-section',
      h('p', { class: 'muted small', 'data-testid': 'task-deps-summary' }, summary, ' If one fails: ', onFail, '.'),
      h('ul', { class: 'deps', 'data-testid': 'task-deps' }, ids.map((id) => {
        const st = depState(t, id);
        return h('li', { 'data-dep': id, 'data-state': st || '' },
          h('a', { href: ui.taskHref(id) }, h('code', {}, id)), ' ', st ? ui.badge(st) : null);
      })));
  }

  if (typeof window !== 'undefined') {
    window.AfterUI = window.AfterUI || {};
    window.AfterUI.dependencies = dependencies;
  } else if (typeof module !== 'undefined') { // Node: for unit tests
    module.exports = { depState, dependencies };
  }
})();
