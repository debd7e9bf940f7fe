"""What a client may write: the intents of the status protocol, as data.

There are two doors into the database and one rule for both. Over REST (and the CLI and
the Python module, which go through :class:`after.service.Tasks`) the daemon writes on
the client's behalf with the worker's account, so :func:`refusal` is checked before the
write and a refusal is a 409. Straight into CouchDB, a user without the ``after_worker``
role is held to the same table by the ``validate_doc_update`` function, which
:mod:`after.design` builds from :data:`CLIENT_MAY` and :data:`MESSAGES` (a 403 with the
same message). A test drives both with one table of cases.

Why these rules: a task a daemon claimed (``schedule``) or a worker runs (``scheduled``)
belongs to its holder until the holder lets go; anything but a cancel (moving it back
to ``waiting``, writing a ``done`` with a made-up result, changing its lease or its
arguments, deleting it) would make it run twice or drop its real outcome. A client
creates tasks as ``waiting``, asks for ``cancel`` and ``reschedule``, and deletes what
is not held. Every status besides those is written by the scheduler and workers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from after import model

#: Keys of :data:`CLIENT_MAY` that are no status.
NEW = "(new)"  #: no document yet (or a deleted one)
HELD = "(held)"  #: claimed or running: ``schedule``, ``scheduled``, or a ``cancel`` its holder has not acknowledged
OTHER = "(other)"  #: a status After does not know (the scheduler ends it ``err``, reason invalid)
#: The target of a deletion.
DELETE = "(delete)"

#: Current state -> what a client may turn it into (a status, or :data:`DELETE`).
CLIENT_MAY: dict[str, tuple[str, ...]] = {
    NEW: (model.WAITING,),
    model.WAITING: (model.WAITING, model.RESCHEDULE, model.CANCEL, DELETE),
    model.RESCHEDULE: (model.RESCHEDULE, model.CANCEL, DELETE),
    model.CANCEL: (model.CANCEL, model.RESCHEDULE, DELETE),
    HELD: (model.CANCEL,),
    model.DONE: (model.RESCHEDULE, DELETE),
    model.ERR: (model.RESCHEDULE, DELETE),
    model.CANCELED: (model.RESCHEDULE, DELETE),
    OTHER: (model.WAITING, model.CANCEL, DELETE),
}

#: On a held task a client's cancel may change only these fields: the rest (lease, job,
#: attempts, ...) is its holder's. Fields starting with ``_`` are CouchDB's.
HELD_CANCEL_MAY_CHANGE = ("status", "history", "updated")


def _verbs(targets: tuple[str, ...]) -> str:
    words = {
        model.WAITING: "edit it (status 'waiting')",
        model.RESCHEDULE: "reschedule it",
        model.CANCEL: "cancel it",
        DELETE: "delete it",
    }
    said = [words[t] for t in targets]
    return said[0] if len(said) == 1 else ", ".join(said[:-1]) + " or " + said[-1]


def _message(state: str) -> str:
    if state == NEW:
        return f"a client creates a task with status 'waiting'; the other statuses are written by the scheduler and workers (CouchDB role {model.WORKER_ROLE})"
    if state == HELD:
        return (
            "the task is held by a daemon or worker (schedule, scheduled, or a cancel not yet acknowledged): "
            f"a client may only cancel it, changing nothing but {', '.join(HELD_CANCEL_MAY_CHANGE)}"
        )
    what = {OTHER: "has a status After does not know", model.CANCEL: "is being canceled (not yet acknowledged)"}.get(state, f"is {state}")
    return f"the task {what}: a client may only {_verbs(CLIENT_MAY[state])}"


#: State -> the refusal's message: the rule, said once for REST and CouchDB alike.
MESSAGES: dict[str, str] = {state: _message(state) for state in CLIENT_MAY}


def looks_like_task(doc: Mapping[str, Any] | None) -> bool:
    """As :func:`after.model.looks_like_task`, for a possibly missing or deleted document."""
    return doc is not None and not doc.get("_deleted") and model.looks_like_task(doc)


def state_of(doc: Mapping[str, Any] | None) -> str:
    """The key of :data:`CLIENT_MAY` for the current document (None: none yet)."""
    if not doc or doc.get("_deleted"):
        return NEW
    status = doc.get("status")
    if status in model.HELD or (status == model.CANCEL and isinstance(doc.get("lease"), Mapping)):
        return HELD
    return status if status in model.STATUSES else OTHER


def _changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = {k for k in (*old, *new) if not k.startswith("_") and k not in HELD_CANCEL_MAY_CHANGE}
    return sorted(k for k in keys if (k in old) != (k in new) or old.get(k) != new.get(k))


def refusal(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> str | None:
    """Why a client may not replace ``old`` by ``new`` (None: deleted), or None if it may.

    Only for documents that look like tasks (either side); anything else is not the
    protocol's business. ``validate_doc_update`` in :mod:`after.design` is this function
    in JavaScript, over the same tables.
    """
    if not (looks_like_task(old) or looks_like_task(new)):
        return None
    state = state_of(old)
    status = None if not new else new.get("status")
    target = DELETE if not new or new.get("_deleted") else status if status in model.STATUSES else None
    if target not in CLIENT_MAY[state]:
        return MESSAGES[state]
    if state == HELD and old is not None and new is not None:
        changed = _changed(old, new)
        if changed:
            return f"{MESSAGES[HELD]}; this write changes {', '.join(changed)}"
    return None


def rule_table() -> str:
    """The README's table of the client's intents (``python -m after.intents`` prints it)."""
    names = {NEW: "no document yet", HELD: "held: `schedule`, `scheduled`, or a `cancel` with a lease", OTHER: "an unknown status"}
    rows = ["| the task is | a client may write |", "|---|---|"]
    for state, targets in CLIENT_MAY.items():
        said = ", ".join("delete" if t == DELETE else f"`{t}`" for t in targets)
        if state == HELD:
            said += f" (changing nothing but {', '.join(f'`{f}`' for f in HELD_CANCEL_MAY_CHANGE)})"
        rows.append(f"| {names.get(state, f'`{state}`')} | {said} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(rule_table(), end="")
