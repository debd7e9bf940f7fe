/* Jitter and excluded dates in the task view (README "Jitter and excluded dates").
 * Kept apart from app.js: app.js calls AfterCalendar.rows() for the Summary and
 * AfterCalendar.runNote() for each of the next runs. Pure functions of the task document. */
(function (root) {
  'use strict';

  /** Summary rows [label, value] for a task's jitter, excluded days and nominal occurrence. */
  function rows(t, timeEl) {
    const out = [];
    if (t.jitter) out.push(['Jitter', 'up to ' + t.jitter + ' s after each occurrence']);
    if (Array.isArray(t.exclude) && t.exclude.length) {
      out.push(['Excluded days', t.exclude.map((x) => String(x).replace('/', ' to ')).join(', ') + ' (' + (t.timezone || 'UTC') + ')']);
    }
    if (t.occurrence && t.occurrence !== t.date) out.push(['Occurrence', timeEl ? timeEl(t.occurrence) : t.occurrence]);
    return out;
  }

  /** The delay of next run ``i`` after its nominal occurrence, as ' · +7.512 s jitter', or ''. */
  function runNote(t, i) {
    const d = t.next_runs && t.next_runs[i], occ = t.next_occurrences && t.next_occurrences[i];
    if (!d || !occ || d === occ) return '';
    const ms = Date.parse(d) - Date.parse(occ);
    return ms > 0 ? ' · +' + String(ms / 1000) + ' s jitter' : '';
  }

  const api = { rows, runNote };
  if (typeof module !== 'undefined' && module.exports) module.exports = api;
  else root.AfterCalendar = api;
})(typeof window !== 'undefined' ? window : globalThis);
