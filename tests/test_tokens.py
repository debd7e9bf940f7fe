"""Scoped tokens (issue 15, point 3): a worker token does its worker's protocol calls and
nothing else, a read-only token reads, both are listed without secrets and revocable,
on every daemon of the database. The rule itself (:mod:`after.tokens`) is driven by
tables first; then real daemons, the CLI, and CouchDB's own validation."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
from conftest import CLIENT_PASSWORD, CLIENT_USER, Couch, Daemon, http, wait_until

from after import tokens
from after.errors import Forbidden, StoreUnavailable
from after.tokens import ADMIN, ANONYMOUS, Principal, TokenCache, Verdict

# -- the rule, in tables -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rule:
    worker: bool = False
    admin: bool = False


PROTOCOL = Rule(worker=True)
PLAIN = Rule()
ADMIN_ROUTE = Rule(admin=True)
MAILER = Principal("worker", "0123456789abcdef", "mailer")
READER = Principal("read", "fedcba9876543210")

#: (principal, route, method, path, {name}, protect_reads, public) -> None (allowed), or the status.
DECISIONS: list[tuple[Principal | None, Rule | None, str, str, str | None, bool, bool, int | None]] = [
    # No credentials: open reads, unless protected; writes and /tokens never.
    (None, PLAIN, "GET", "/tasks", None, False, False, None),
    (None, PLAIN, "GET", "/tasks", None, True, False, 401),
    (None, PLAIN, "GET", "/health", None, True, True, None),
    (None, PLAIN, "POST", "/tasks", None, False, False, 401),
    (None, ADMIN_ROUTE, "GET", "/tokens", None, False, False, 401),
    (None, PROTOCOL, "POST", "/workers/mailer/poll", "mailer", False, False, 401),
    (None, None, "POST", "/nosuch", None, False, False, 401),
    # The admin token: everything.
    (ADMIN, ADMIN_ROUTE, "POST", "/tokens", None, True, False, None),
    (ADMIN, PROTOCOL, "POST", "/workers/any/poll", "any", True, False, None),
    (ADMIN, PLAIN, "DELETE", "/tasks/x", None, True, False, None),
    # A worker token: its own worker's protocol calls, and public reads.
    (MAILER, PROTOCOL, "POST", "/workers/mailer/poll", "mailer", False, False, None),
    (MAILER, PROTOCOL, "POST", "/workers/mailer/tasks/task:1/finish", "mailer", True, False, None),
    (MAILER, PROTOCOL, "POST", "/workers/other/poll", "other", False, False, 403),
    (MAILER, PLAIN, "POST", "/workers/mailer", "mailer", False, False, 403),  # starting a local worker: admin's
    (MAILER, PLAIN, "POST", "/tasks", None, False, False, 403),
    (MAILER, PLAIN, "GET", "/tasks", None, False, False, 403),
    (MAILER, PLAIN, "GET", "/workers/mailer", "mailer", False, False, 403),
    (MAILER, ADMIN_ROUTE, "GET", "/tokens", None, False, False, 403),
    (MAILER, PLAIN, "GET", "/health", None, True, True, None),
    (MAILER, None, "POST", "/nosuch", None, False, False, 403),
    # A read token: reads of everything but /tokens.
    (READER, PLAIN, "GET", "/tasks", None, True, False, None),
    (READER, PLAIN, "HEAD", "/tasks", None, True, False, None),
    (READER, PLAIN, "GET", "/workers/mailer/log", "mailer", True, False, None),
    (READER, None, "GET", "/nosuch", None, True, False, None),  # the router's 404
    (READER, PLAIN, "POST", "/tasks", None, False, False, 403),
    (READER, PLAIN, "DELETE", "/tasks/x", None, False, False, 403),
    (READER, PROTOCOL, "POST", "/workers/mailer/poll", "mailer", False, False, 403),
    (READER, ADMIN_ROUTE, "GET", "/tokens", None, False, False, 403),
    (READER, ADMIN_ROUTE, "POST", "/tokens", None, False, False, 403),
    (READER, PLAIN, "GET", "/health", None, True, True, None),
]


@pytest.mark.parametrize(("principal", "route", "method", "path", "name", "protect", "public", "expected"), DECISIONS)
def test_who_may_call_what(
    principal: Principal | None, route: Rule | None, method: str, path: str, name: str | None, protect: bool, public: bool, expected: int | None
) -> None:
    verdict = tokens.decide(principal, route, method, path, name, protect_reads=protect, public=public)
    assert (verdict.status if verdict else None) == expected, verdict
    if verdict is not None and verdict.status == 403:
        # The refusal names the token's scope (its worker) and what it tried.
        assert f"{method} {path}" in verdict.message or repr(name) in verdict.message, verdict
        assert principal is not None and principal.token in verdict.message
        if principal.kind == "worker":
            assert "mailer" in verdict.message


def test_anonymous_and_no_credentials_are_the_same() -> None:
    for row in DECISIONS:
        if row[0] is None:
            _, route, method, path, name, protect, public, _ = row
            args = (route, method, path, name)
            assert tokens.decide(None, *args, protect_reads=protect, public=public) == tokens.decide(ANONYMOUS, *args, protect_reads=protect, public=public)


def _issued(scope: tokens.Scope = "worker", worker: str | None = "mailer") -> tuple[str, dict[str, Any]]:
    return tokens.new(scope, worker=worker, label="l", created="2030-01-01T00:00:00.000Z", created_by="admin")


def test_a_token_is_its_id_and_a_secret_of_which_only_the_hash_is_stored() -> None:
    token, doc = _issued()
    parsed = tokens.parse(token)
    assert parsed is not None
    token_id, secret = parsed
    assert doc["_id"] == f"token:{token_id}" and doc["type"] == "token" and doc["scope"] == "worker" and doc["worker"] == "mailer"
    assert secret not in json.dumps(doc) and doc["hash"] == tokens.digest(secret)
    assert tokens.check(doc, token_id, secret) == Principal("worker", token_id, "mailer")
    read_token, read_doc = _issued("read", None)
    read_id, read_secret = tokens.parse(read_token) or ("", "")
    assert "worker" not in read_doc and tokens.check(read_doc, read_id, read_secret) == Principal("read", read_id)
    view = tokens.public_view(doc)
    assert "hash" not in view and secret not in json.dumps(view) and view["id"] == token_id
    assert _issued()[0] != token  # random


SECRET = "s" * 43


@pytest.mark.parametrize(
    "text",
    ["", "aft_", "aft_0123456789abcdef", "aft_0123456789abcdef_", f"aft_0123456789ABCDEF_{SECRET}", f"aft_0123_{SECRET}", f"xft_0123456789abcdef_{SECRET}"],
)
def test_malformed_tokens_do_not_parse(text: str) -> None:
    assert tokens.parse(text) is None


def test_what_a_token_document_does_not_grant() -> None:
    token, doc = _issued()
    token_id, secret = tokens.parse(token) or ("", "")
    refusals: list[tuple[str, dict[str, Any] | None, str]] = [
        ("unknown", None, secret),
        ("wrong secret", doc, secret[:-1] + ("A" if secret[-1] != "A" else "B")),
        ("revoked", tokens.revoked(doc, "2030-01-02T00:00:00.000Z"), secret),
        ("not a token document", {**doc, "type": "task"}, secret),
        ("another id", {**doc, "_id": "token:ffffffffffffffff"}, secret),
        ("no scope", {**doc, "scope": "admin"}, secret),
        ("worker scope without a worker", {k: v for k, v in doc.items() if k != "worker"}, secret),
        ("no hash", {k: v for k, v in doc.items() if k != "hash"}, secret),
    ]
    for what, candidate, given in refusals:
        verdict = tokens.check(candidate, token_id, given)
        assert isinstance(verdict, Verdict) and verdict.status == 401, what
        assert token_id in verdict.message, what
    assert "revoked at 2030-01-02" in str(tokens.check(refusals[2][1], token_id, secret))
    again = tokens.revoked(tokens.revoked(doc, "2030-01-02T00:00:00.000Z"), "2031-01-01T00:00:00.000Z")
    assert again["revoked"] == "2030-01-02T00:00:00.000Z"  # revoking again keeps the first time


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (None, "body"),
        ([], "body"),
        ({}, "scope"),
        ({"scope": "admin"}, "scope"),
        ({"scope": "worker"}, "worker"),
        ({"scope": "worker", "worker": "a b"}, "worker"),
        ({"scope": "worker", "worker": "m", "label": 5}, "label"),
        ({"scope": "worker", "worker": "m", "label": "x" * 201}, "label"),
        ({"scope": "read", "worker": "m"}, "worker"),
        ({"scope": "read", "ttl": 5}, "ttl"),
    ],
)
def test_a_bad_request_body_names_the_field(body: Any, field: str) -> None:
    from after.errors import InvalidInput

    with pytest.raises(InvalidInput) as exc:
        tokens.request_body(body)
    assert exc.value.field == field and exc.value.message.startswith(field + ":"), exc.value.message


# -- the cache -------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_cache_reads_each_token_once_per_ttl_and_once_for_many_callers() -> None:
    _, doc = _issued()
    token_id = doc["_id"][len("token:") :]
    loads: list[str] = []
    gate = asyncio.Event()

    async def load(key: str) -> dict[str, Any] | None:
        loads.append(key)
        await gate.wait()
        return dict(doc) if key == doc["_id"] else None

    clock = Clock()
    cache = TokenCache(load, ttl=5.0, clock=clock)
    waiting = [asyncio.create_task(cache.get(token_id)) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()
    assert all(d == doc for d in await asyncio.gather(*waiting))
    assert loads == [doc["_id"]]  # fifty callers, one read
    for _ in range(500):
        await cache.get(token_id)
    clock.now += 4.9
    await cache.get(token_id)
    assert len(loads) == 1
    clock.now += 0.2  # past the TTL: read again
    await cache.get(token_id)
    assert len(loads) == 2 and cache.reads == 2
    assert await cache.get("ffffffffffffffff") is None and await cache.get("ffffffffffffffff") is None
    assert len(loads) == 3  # an unknown id is remembered too


async def test_the_cache_takes_changes_at_once_and_keeps_working_through_a_store_outage() -> None:
    _, doc = _issued()
    token_id = doc["_id"][len("token:") :]
    down = False

    async def load(key: str) -> dict[str, Any] | None:
        if down:
            raise StoreUnavailable("CouchDB down")
        return dict(doc)

    clock = Clock()
    cache = TokenCache(load, ttl=5.0, clock=clock)
    assert await cache.get(token_id) == doc
    # Another daemon revokes it: the changes feed brings the document before the TTL ends.
    revoked = tokens.revoked(doc, "2030-01-02T00:00:00.000Z")
    cache.observe([{"id": "task:x", "doc": {"_id": "task:x"}}, {"id": doc["_id"], "doc": revoked}])
    assert (await cache.get(token_id) or {}).get("revoked")
    # CouchDB unreachable past the TTL: the document read last is used.
    down = True
    clock.now += 60
    assert (await cache.get(token_id) or {}).get("revoked")
    with pytest.raises(StoreUnavailable):
        await cache.get("ffffffffffffffff")  # nothing held: the failure is the answer (503)


# -- real daemons ----------------------------------------------------------------------------------------


def issue(d: Daemon, body: dict[str, Any]) -> dict[str, Any]:
    status, made = d.api("POST", "/tokens", body)
    assert status == 201, made
    return made


def call(d: Daemon, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return http(d.base, method, path, body, token=token)


def test_a_worker_token_does_its_workers_protocol_calls_and_nothing_else(daemon: Daemon) -> None:
    made = issue(daemon, {"scope": "worker", "worker": "mailer", "label": "web-3"})
    assert set(made) == {"id", "token", "scope", "worker", "label", "created"}
    assert (made["scope"], made["worker"], made["label"]) == ("worker", "mailer", "web-3") and made["token"].startswith("aft_")
    token = made["token"]

    status, session = call(daemon, token, "POST", "/workers/mailer/connect", {"concurrency": 2, "host": "web-3"})
    assert status == 201, session
    status, polled = call(daemon, token, "POST", "/workers/mailer/poll", {"session": session["session"], "wait": 0})
    assert status == 200 and polled["tasks"] == [], polled

    refused = [
        ("POST", "/workers/other/connect", {"concurrency": 1}),
        ("POST", "/workers/other/poll", {"session": session["session"], "wait": 0}),
        ("POST", "/tasks", {"worker": "mailer", "date": "2040-01-01", "job": "noop"}),
        ("POST", "/workers/mailer", {"concurrency": 1}),
        ("DELETE", "/workers/mailer", None),
        ("GET", "/tasks", None),
        ("GET", "/tokens", None),
        ("POST", "/tokens", {"scope": "worker", "worker": "mailer"}),
    ]
    for method, path, body in refused:
        status, reply = call(daemon, token, method, path, body)
        assert status == 403 and reply["error"] == "forbidden", (method, path, reply)
        assert "worker mailer" in reply["message"] and made["id"] in reply["message"], reply
    status, reply = call(daemon, token, "POST", "/workers/other/poll", {"session": "s"})
    assert "'other'" in reply["message"] and "POST /workers/other/poll" in reply["message"]
    status, reply = call(daemon, token, "POST", "/tasks", {})
    assert "POST /tasks" in reply["message"]
    assert daemon.api("GET", "/tasks")[1]["tasks"] == []  # nothing it tried was done
    assert [w["name"] for w in daemon.api("GET", "/workers")[1]["workers"] if not w.get("remote")] == []
    assert call(daemon, token, "GET", "/health")[0] == 200  # public reads stay public

    status, revoked = daemon.api("DELETE", f"/tokens/{made['id']}")
    assert status == 200 and revoked["revoked"] and revoked["id"] == made["id"]
    status, reply = call(daemon, token, "POST", "/workers/mailer/poll", {"session": session["session"], "wait": 0})
    assert status == 401 and "revoked" in reply["message"], reply
    assert token not in daemon.log()


def test_a_read_token_reads_and_cannot_write(daemon: Daemon) -> None:
    daemon.create({"id": "r1", "worker": "w", "date": "2040-01-01", "job": "noop"})
    reader = issue(daemon, {"scope": "read", "label": "grafana"})
    assert reader["worker"] is None and reader["scope"] == "read"
    token = reader["token"]
    status, listing = call(daemon, token, "GET", "/tasks")
    assert status == 200 and [t["_id"] for t in listing["tasks"]] == ["task:r1"]
    for path in ("/tasks/task:r1", "/workers", "/stats", "/daemons"):
        assert call(daemon, token, "GET", path)[0] == 200, path
    for method, path, body in [
        ("POST", "/tasks", {"worker": "w", "date": "2040-01-01", "job": "noop"}),
        ("POST", "/tasks/task:r1/cancel", None),
        ("DELETE", "/tasks/task:r1", None),
        ("POST", "/workers/w", None),
        ("POST", "/workers/w/connect", {}),
        ("GET", "/tokens", None),
        ("DELETE", f"/tokens/{reader['id']}", None),
    ]:
        status, reply = call(daemon, token, method, path, body)
        assert status == 403 and "read-only" in reply["message"] and f"{method} {path}" in reply["message"], (method, path, reply)
    assert daemon.task("task:r1")["status"] == "waiting"


def test_tokens_are_listed_without_secrets_and_bad_credentials_are_401(daemon: Daemon) -> None:
    worker = issue(daemon, {"scope": "worker", "worker": "mailer"})
    reader = issue(daemon, {"scope": "read"})
    daemon.api("DELETE", f"/tokens/{reader['id']}")
    status, text = http(daemon.base, "GET", "/tokens", token=daemon.token)
    assert status == 200
    raw = json.dumps(text)
    for made in (worker, reader):
        assert made["token"] not in raw and made["token"].split("_", 2)[2] not in raw
    assert "hash" not in raw
    listed = {t["id"]: t for t in text["tokens"]}
    assert listed[worker["id"]]["worker"] == "mailer" and "revoked" not in listed[worker["id"]]
    assert listed[reader["id"]]["revoked"] and listed[reader["id"]]["created_by"] == "admin"
    # /tokens is the admin's, even where reads are open.
    assert http(daemon.base, "GET", "/tokens")[0] == 401
    assert daemon.api("DELETE", "/tokens/0123456789abcdef")[0] == 404
    assert daemon.api("DELETE", "/tokens/not-an-id")[0] == 404
    assert daemon.api("POST", "/tokens", {"scope": "worker", "worker": "a/b"})[1]["field"] == "worker"
    good = worker["token"]
    for bad in (good[:-1], "aft_" + "0" * 16 + "_" + good.split("_", 2)[2], "aft_nothex", good + "x"):
        status, reply = call(daemon, bad, "POST", "/workers/mailer/connect", {})
        assert status == 401 and reply["error"] == "unauthorized", (bad, reply)
    status, reply = call(daemon, "aft_short", "GET", "/tasks")
    assert status == 401 and "malformed token" in reply["message"]


def test_every_daemon_on_the_database_knows_a_token_and_its_revocation(start_daemon: Callable[..., Daemon]) -> None:
    d0 = start_daemon("d0")
    made = issue(d0, {"scope": "worker", "worker": "mailer"})
    d1 = start_daemon("d1")  # starts with the token document in its database, and leaves it alone
    status, session = call(d1, made["token"], "POST", "/workers/mailer/connect", {})
    assert status == 201, session
    assert d0.api("DELETE", f"/tokens/{made['id']}")[0] == 200
    # d1 holds the document for up to tokens.CACHE_SECONDS; its changes feed brings the revocation sooner.
    wait_until(
        lambda: call(d1, made["token"], "POST", "/workers/mailer/poll", {"session": session["session"], "wait": 0})[0] == 401,
        tokens.CACHE_SECONDS + 15,
        "d1 to refuse the token revoked on d0",
    )
    listed = d1.api("GET", "/tokens")[1]["tokens"]
    assert [(t["id"], bool(t.get("revoked"))) for t in listed] == [(made["id"], True)]
    assert d1.api("GET", "/tasks")[1]["tasks"] == []  # not taken for a task
    assert "token:" not in d1.log() and "token:" not in d0.log()


def test_couchdb_lets_only_after_write_token_documents(couch: Couch, dbname: str) -> None:
    """A program with the client account could otherwise give itself a worker token."""
    _, doc = _issued()

    async def go() -> None:
        async with couch.store(dbname, user=CLIENT_USER, password=CLIENT_PASSWORD) as client, couch.store(dbname) as worker:
            for forged in (doc, {**doc, "_id": "note:x"}):
                with pytest.raises(Forbidden, match="token documents are written by After only"):
                    await client.put(dict(forged))
            stored = await worker.put(dict(doc))
            with pytest.raises(Forbidden):
                await client.put(tokens.public_view(stored) | {"_id": stored["_id"], "_rev": stored["_rev"], "hash": tokens.digest("mine")})
            with pytest.raises(Forbidden):
                await client.delete(stored["_id"], stored["_rev"])
            await worker.put(tokens.revoked(stored, "2030-01-01T00:00:00.000Z"))

    asyncio.run(go())


# -- the CLI ------------------------------------------------------------------------------------------------


def test_the_cli_issues_lists_and_revokes_tokens(daemon: Daemon) -> None:
    res = daemon.cli("token", "--worker", "mailer", "--label", "web-3")
    token = res.stdout.strip()
    assert tokens.parse(token) is not None and "\n" not in token
    token_id = tokens.parse(token)[0]  # type: ignore[index]
    assert f"after token --revoke {token_id}" in res.stderr
    assert call(daemon, token, "POST", "/workers/mailer/connect", {})[0] == 201

    read = json.loads(daemon.cli("token", "--read-only", "--json").stdout)
    assert read["scope"] == "read" and call(daemon, read["token"], "GET", "/tasks")[0] == 200

    listing = daemon.cli("token", "--list").stdout.splitlines()
    assert listing[0].split()[:3] == ["ID", "SCOPE", "WORKER"]
    rows = {line.split()[0]: line for line in listing[1:]}
    assert set(rows) == {token_id, read["id"]}
    assert "worker" in rows[token_id] and "mailer" in rows[token_id] and rows[token_id].rstrip().endswith("web-3")
    assert token not in "\n".join(listing)

    assert daemon.cli("token", "--revoke", token_id).stdout.startswith(f"token {token_id} revoked at ")
    assert call(daemon, token, "POST", "/workers/mailer/connect", {})[0] == 401
    daemon.cli("token", "--revoke", read["token"])  # the token itself names it too
    listed = json.loads(daemon.cli("token", "--list", "--json").stdout)
    assert all(t.get("revoked") for t in listed) and len(listed) == 2

    assert daemon.cli("token").stdout.strip() == daemon.token  # the admin token, as before


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("--worker", "a b"), 1, "worker: invalid name"),
        (("--revoke", "0123456789abcdef"), 1, "no token '0123456789abcdef'"),
        (("--revoke", "oops"), 1, "no token 'oops'"),
        (("--worker", "m", "--read-only"), 2, "--worker and --read-only cannot be combined"),
        (("--list", "--label", "x"), 2, "--label goes with --worker NAME or --read-only"),
    ],
)
def test_cli_token_errors_are_clear(daemon: Daemon, args: tuple[str, ...], code: int, says: str) -> None:
    res = daemon.cli("token", *args, check=False)
    assert res.returncode == code and says in res.stderr, res.stderr
