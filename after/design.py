"""After's design document: the views every part reads and the ``validate_doc_update``
that holds the status protocol for writes straight into CouchDB. Plain data (JavaScript
sources); :meth:`after.store.Store.setup` writes it, and re-checks it at every start.
"""

from __future__ import annotations

import json
from typing import Any

from after import model

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

# Runs inside CouchDB on every write, whoever writes: the statuses only the scheduler
# and workers may write are refused to users without the after_worker role. Deletions
# and non-task documents are not its business.
_VALIDATE = """
function (newDoc, oldDoc, userCtx, secObj) {
  if (newDoc._deleted || newDoc.type !== 'task') return;
  var roles = userCtx.roles || [];
  var trusted = roles.indexOf('%(role)s') !== -1 || roles.indexOf('_admin') !== -1;
  var s = newDoc.status;
  var reserved = s === 'schedule' || s === 'scheduled' || s === 'canceled';
  if (reserved && !trusted && !(oldDoc && oldDoc.status === s)) {
    throw({forbidden: "status '" + s + "' can only be written by a worker (CouchDB role %(role)s)"});
  }
  if (typeof newDoc.status !== 'string') {
    throw({forbidden: 'a task needs a status'});
  }
}
""" % {"role": model.WORKER_ROLE}


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
