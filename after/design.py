"""After's design document: the views every part reads and the ``validate_doc_update``
that holds the status protocol for writes straight into CouchDB. Plain data (JavaScript
sources); :meth:`after.store.Store.setup` writes it, and re-checks it at every start.
"""

from __future__ import annotations

import json
from typing import Any

from after import intents, model, tokens

#: The design document's name (``_design/after``).
DESIGN = "after"

# Keys are epoch milliseconds so documents written by other programs with any accepted
# date form (ISO with offset, epoch seconds) sort by real time. An unparseable date gets
# key 0: due at once, where the scheduler checks it and ends it ``err`` with the reason.
_AGENDA_MAP = """
function (doc) {
  if (doc.type !== 'task') return;
  function ms(v) {
    if (typeof v === 'number') return v * 1000;
    if (typeof v !== 'string') return 0;
    var t = Date.parse(v);
    return isNaN(t) ? 0 : t;
  }
  var s = doc.status;
  if (s === 'waiting' || s === 'reschedule') emit(ms(doc.date), null);
  else if (s === 'schedule' || s === 'scheduled') emit(ms(doc.lease && doc.lease.until), null);
  else if (s === 'cancel') emit(0, null);
  // overlap / backfill (after.occurrences): pending backfills, finished children not yet recorded
  if ((Array.isArray(doc.backfill) && doc.backfill.length) || (doc.parent && (s === 'done' || s === 'err' || s === 'canceled'))) emit(0, null);
}
"""

_BY_STATUS_MAP = """
function (doc) {
  if (doc.type !== 'task') return;
  emit([doc.status, doc.date, doc._id], null);
}
"""

# Tasks with conflicting leaves (map functions see ``_conflicts``), whatever their status.
_CONFLICTS_MAP = """
function (doc) {
  if (doc.type === 'task' && doc._conflicts) emit(doc._id, null);
}
"""

# Documents that look like tasks but that no other view shows: an id in the ``task:``
# space without ``"type": "task"``, or a status After does not know. The scheduler reads
# it at start and ends each ``err`` (invalid, naming the field) instead of ignoring it.
_STRAYS_MAP = """
function (doc) {
  var known = %(statuses)s;
  var named = typeof doc._id === 'string' && doc._id.indexOf('task:') === 0;
  if (doc.type === 'task' ? known.indexOf(doc.status) === -1 : named) emit(doc._id, null);
}
""" % {"statuses": json.dumps(list(model.STATUSES))}

_BY_DATE_MAP = """
function (doc) {
  if (doc.type !== 'task') return;
  emit([doc.date, doc._id], null);
}
"""

# Finished tasks without a retention of their own, by last update (the global retention
# applies); and those with one, by the time they expire.
_FINISHED_MAP = """
function (doc) {
  if (doc.type !== 'task') return;
  if (doc.status !== 'done' && doc.status !== 'err' && doc.status !== 'canceled') return;
  if (typeof doc.retention === 'number') return;
  var t = Date.parse(doc.updated || doc.date);
  emit(isNaN(t) ? 0 : t, null);
}
"""

_EXPIRING_MAP = """
function (doc) {
  if (doc.type !== 'task') return;
  if (doc.status !== 'done' && doc.status !== 'err' && doc.status !== 'canceled') return;
  if (typeof doc.retention !== 'number') return;
  var t = Date.parse(doc.updated || doc.date);
  emit((isNaN(t) ? 0 : t) + doc.retention * 1000, null);
}
"""

# Runs inside CouchDB on every write, whoever writes. Users with the after_worker role
# (the daemons and workers) and server admins write anything; nobody else writes token
# documents (after.tokens: a client could otherwise make itself a token); everyone else is held to
# the client's intents: after.intents.refusal in JavaScript, over the same tables (so
# REST and CouchDB refuse the same writes with the same message).
_VALIDATE = """
function (newDoc, oldDoc, userCtx, secObj) {
  var may = %(may)s, messages = %(messages)s, heldMayChange = %(held_may_change)s;
  var statuses = %(statuses)s;
  function isTask(d) {
    if (!d || d._deleted) return false;
    var named = typeof d._id === 'string';
    if (named && d._id.indexOf('_design/') === 0) return false;
    return d.type === 'task' || (named && d._id.indexOf('task:') === 0);
  }
  function isToken(d) {
    if (!d) return false;
    return d.type === '%(token_type)s' || (typeof d._id === 'string' && d._id.indexOf('%(token_prefix)s') === 0);
  }
  function stateOf(d) {
    if (!d || d._deleted) return '%(new)s';
    var s = d.status;
    if (s === 'schedule' || s === 'scheduled') return '%(held)s';
    if (s === 'cancel' && d.lease !== null && typeof d.lease === 'object' && !Array.isArray(d.lease)) return '%(held)s';
    return statuses.indexOf(s) !== -1 ? s : '%(other)s';
  }
  function same(a, b) {
    if (a === b) return true;
    if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
    if (Array.isArray(a) !== Array.isArray(b)) return false;
    var ka = Object.keys(a), kb = Object.keys(b);
    if (ka.length !== kb.length) return false;
    for (var i = 0; i < ka.length; i++) {
      if (!Object.prototype.hasOwnProperty.call(b, ka[i]) || !same(a[ka[i]], b[ka[i]])) return false;
    }
    return true;
  }
  var roles = userCtx.roles || [];
  var trusted = roles.indexOf('%(role)s') !== -1 || roles.indexOf('_admin') !== -1;
  if (isToken(newDoc) || isToken(oldDoc)) {
    if (trusted) return;
    throw({forbidden: 'token documents are written by After only (its daemons: POST /tokens, `after token`)'});
  }
  if (!isTask(oldDoc) && !isTask(newDoc)) return;
  if (newDoc.type === 'task' && !newDoc._deleted && typeof newDoc.status !== 'string') {
    throw({forbidden: 'a task needs a status'});
  }
  if (trusted) return;
  var state = stateOf(oldDoc);
  var target = newDoc._deleted ? '%(delete)s' : statuses.indexOf(newDoc.status) !== -1 ? newDoc.status : null;
  if (may[state].indexOf(target) === -1) throw({forbidden: messages[state]});
  if (state === '%(held)s' && !newDoc._deleted) {
    var keys = {}, changed = [], k;
    for (k in oldDoc) keys[k] = true;
    for (k in newDoc) keys[k] = true;
    for (k in keys) {
      if (k.charAt(0) === '_' || heldMayChange.indexOf(k) !== -1) continue;
      var inOld = Object.prototype.hasOwnProperty.call(oldDoc, k), inNew = Object.prototype.hasOwnProperty.call(newDoc, k);
      if (inOld !== inNew || !same(oldDoc[k], newDoc[k])) changed.push(k);
    }
    if (changed.length) throw({forbidden: messages[state] + '; this write changes ' + changed.sort().join(', ')});
  }
}
""" % {
    "may": json.dumps(intents.CLIENT_MAY, sort_keys=True),
    "messages": json.dumps(intents.MESSAGES, sort_keys=True),
    "held_may_change": json.dumps(intents.HELD_CANCEL_MAY_CHANGE),
    "new": intents.NEW,
    "held": intents.HELD,
    "other": intents.OTHER,
    "delete": intents.DELETE,
    "role": model.WORKER_ROLE,
    "token_type": tokens.TYPE,
    "token_prefix": tokens.DOC_PREFIX,
    "statuses": json.dumps(list(model.STATUSES)),
}


def design_document() -> dict[str, Any]:
    return {
        # pouchdb-server takes the body's _id over the URL's: set it (right on both).
        "_id": f"_design/{DESIGN}",
        "language": "javascript",
        "views": {
            "agenda": {"map": _AGENDA_MAP.strip()},
            "by_status": {"map": _BY_STATUS_MAP.strip(), "reduce": "_count"},
            "by_date": {"map": _BY_DATE_MAP.strip()},
            "finished": {"map": _FINISHED_MAP.strip()},
            "expiring": {"map": _EXPIRING_MAP.strip()},
            "conflicts": {"map": _CONFLICTS_MAP.strip()},
            "strays": {"map": _STRAYS_MAP.strip()},
        },
        # Stripped: pouchdb-server refuses a function whose source starts with a newline.
        "validate_doc_update": _VALIDATE.strip(),
    }
