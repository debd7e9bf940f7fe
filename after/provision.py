"""Preparing a CouchDB for After: the database, its ``_security``, the design document,
the users. What ``after setup``, the daemon's start and the embedded server do, apart
from the task reads and writes of :class:`after.store.Store`: functions over an open store.

The ``_security`` rules are plain functions over the document (:func:`missing_security`,
:func:`merged_security`): After adds its roles and keeps an operator's names and roles.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import aiocouch
import aiohttp
from aiocouch.database import Database
from aiocouch.document import Document

from after import model
from after.couchfail import translate
from after.design import DESIGN, design_document
from after.errors import Conflict, Forbidden, NotFound, StoreUnavailable

if TYPE_CHECKING:
    from after.store import Store

log = logging.getLogger("after.store")

#: The CouchDB role of programs that write tasks straight into the database. A member of
#: the database (``_security``), but not the worker role: ``validate_doc_update`` holds it
#: to a client's intents (:mod:`after.intents`), so a direct writer can create, cancel,
#: reschedule and delete tasks but never claim or run one.
CLIENT_ROLE = "after_client"

#: What After needs in a database's ``_security``: the worker role among its admins (it
#: updates the design document, compacts), and the worker and client roles among its members.
SECURITY_ROLES: dict[str, tuple[str, ...]] = {"admins": (model.WORKER_ROLE,), "members": (model.WORKER_ROLE, CLIENT_ROLE)}


def missing_security(current: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (section, role) pairs of :data:`SECURITY_ROLES` that ``_security`` lacks."""
    out = []
    for section, roles in SECURITY_ROLES.items():
        body = current.get(section)
        have = body.get("roles") if isinstance(body, dict) else None
        have = have if isinstance(have, list) else []
        out += [(section, role) for role in roles if role not in have]
    return out


def merged_security(current: Mapping[str, Any]) -> dict[str, Any]:
    """``_security`` with After's roles added; every other name, role and key kept."""
    out: dict[str, Any] = dict(current)
    for section, roles in SECURITY_ROLES.items():
        body = dict(out[section]) if isinstance(out.get(section), dict) else {}
        have = list(body["roles"]) if isinstance(body.get("roles"), list) else []
        body["roles"] = have + [r for r in roles if r not in have]
        if not isinstance(body.get("names"), list):
            body["names"] = []
        out[section] = body
    return out


async def drop(store: Store) -> None:
    """Delete the database (admin only; tests and `after setup --reset`)."""
    if not await store.is_admin():
        raise StoreUnavailable("only a server admin may delete a database")
    with store._call("setup", f"DELETE {store.name}"):
        await store.db.delete()


async def setup(store: Store, *, create: bool = True, security: str = "merge") -> list[str]:
    """Create (when allowed) the database; see to its ``_security`` and design document.

    Idempotent: run at every daemon start. Returns one line per change made (none when
    everything was already in place). ``security``:

    - ``"merge"`` (``after setup``, and the embedded server's own setup): After's roles
      (:data:`SECURITY_ROLES`) are added to ``_security``; every name and role an
      operator put there is kept. pouchdb-server leaves new databases open to anyone
      (CouchDB 3 makes them admin-only), so this is how its databases get members.
    - ``"check"`` (a daemon on a CouchDB it did not set up itself): ``_security`` is
      only read, and what lacks is logged as a warning naming the command that adds
      it; never written. A database this call just created is the exception: it has
      nothing of an operator's yet, and gets After's roles.
    """
    if security not in ("merge", "check"):
        raise ValueError(f"security: expected 'merge' or 'check', got {security!r}")
    changes: list[str] = []
    with store._call("setup", f"database {store.name}"):
        exists = await store.db._exists()
        if not exists:
            # Only a server admin may create a database: pouchdb-server's process
            # dies when anyone else tries (CouchDB answers 401). Ask who we are first.
            if not create or not await store.is_admin():
                raise StoreUnavailable(
                    f"database {store.name!r} does not exist and {store._user or 'anonymous'} is no "
                    "server admin: run `COUCHDB_ADMIN_URL=... make setup` (or `after setup`)"
                )
            await store.couch.create(store.name, exists_ok=True)
            changes.append(f"created database {store.name!r}")
    if security == "merge" or not exists:
        changes += await merge_security(store)
    else:
        await check_security(store)
    before = await _design_rev(store)
    await ensure_design(store)
    if await _design_rev(store) != before:
        changes.append(f"wrote design document _design/{DESIGN} of {store.name!r}")
    return changes


async def _design_rev(store: Store) -> str | None:
    try:
        rev = (await store.get(f"_design/{DESIGN}")).get("_rev")
    except NotFound:
        return None
    return rev if isinstance(rev, str) else None


async def merge_security(store: Store) -> list[str]:
    """Add After's roles to ``_security``, keeping everything else; one line per role added."""
    with store._call("setup", f"{store.name}/_security"):
        current = await store.db._get_security()
        missing = missing_security(current)
        if not missing:
            return []
        await store.db._put_security(merged_security(current))
    return [f"_security of {store.name!r}: added role {role} to {section}" for section, role in missing]


async def check_security(store: Store) -> list[tuple[str, str]]:
    """Read ``_security`` and warn about what After needs and it lacks; never write it.

    Returns the missing (section, role) pairs. Without the worker role among the
    database's admins the daemon cannot update the design document; without the
    client role among its members direct writers are refused.
    """
    try:
        with translate(f"{store.name}/_security"):
            current = await store.db._get_security()
    except (Forbidden, StoreUnavailable) as exc:
        log.warning(
            "cannot read _security of %s (%s): not checked whether it lists After's roles; `after setup --admin-url URL` adds them",
            store.name,
            exc.message,
        )
        return []
    missing = missing_security(current)
    if missing:
        log.warning(
            "_security of %s lacks %s: run `after setup --admin-url URL` (or `COUCHDB_ADMIN_URL=URL make setup`) "
            "to add them; the daemon never changes _security of a CouchDB it did not set up",
            store.name,
            ", ".join(f"role {role} in {section}" for section, role in missing),
        )
    return missing


async def ensure_design(store: Store) -> None:
    """Write ``_design/after`` when it is missing or differs (the worker role may: it is a
    database admin through ``_security``): at every start, and the loops' repair of a
    deleted design document."""
    wanted = design_document()
    try:
        current = await store.get(wanted["_id"])
    except NotFound:
        current = {}
    body = {k: v for k, v in current.items() if k not in ("_rev",)}
    if body == wanted:
        return
    if current.get("_rev"):
        wanted["_rev"] = current["_rev"]
    try:
        await store.put(wanted)
    except Conflict:
        pass  # another daemon wrote it at the same moment: same content


async def ensure_system_db(store: Store, name: str) -> bool:
    """Create ``_users`` / ``_replicator`` when missing (a single-node CouchDB 3 needs them).

    True when it was created now."""
    with store._call("setup", name):
        db = Database(store.couch, name)
        if await db._exists():
            return False
        await store.couch.create(name, exists_ok=True)
        return True


async def ensure_user(store: Store, name: str, password: str, roles: Sequence[str], *, reset_password: bool = True) -> list[str]:
    """Create a CouchDB user, or give an existing one ``roles`` (keeping its others); needs
    server admin. Creates ``_users`` when missing. An existing user's password is set only
    with ``reset_password`` (the embedded server's accounts, from its secrets files).
    Returns one line per change made."""
    await ensure_system_db(store, "_users")
    with store._call("setup", "_users"):
        users = Database(store.couch, "_users")
        doc_id = f"org.couchdb.user:{name}"
        try:
            doc = await users.get(doc_id)
            data = dict(doc.data or {})
            exists = True
        except aiocouch.NotFoundError:
            data = {"_id": doc_id, "name": name, "type": "user", "roles": []}
            exists = False
        had = [r for r in data.get("roles") or [] if isinstance(r, str)]
        added = [r for r in roles if r not in had]
        changes = []
        if not exists:
            changes.append(f"created user {name!r} (role {', '.join(roles)})")
        elif added:
            changes.append(f"user {name!r}: added role {', '.join(added)}")
        if exists and reset_password:
            changes.append(f"user {name!r}: password reset")
        if not exists or reset_password:
            data["password"] = password
        if not changes:
            return []
        data["roles"] = had + added
        await Document(users, doc_id, data=data).save()
    return changes


async def password_works(store: Store, name: str, password: str) -> bool:
    """Whether CouchDB accepts ``name``/``password`` (``GET /_session`` as that user)."""
    auth = "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()
    headers = {"Accept": "application/json", "Authorization": auth}
    with translate("GET /_session"):
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=store._timeout)) as session,
            session.get(store.url + "/_session", headers=headers) as resp,
        ):
            if resp.status in (401, 403):
                return False
            resp.raise_for_status()
            reply = await resp.json(content_type=None)
    ctx = reply.get("userCtx") if isinstance(reply, dict) else None
    return isinstance(ctx, dict) and ctx.get("name") == name
