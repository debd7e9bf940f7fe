"""``after serve``: the daemon. Wires store, scheduler, supervisor and HTTP, and shuts down in order.

Start-up: take the state directory's lock (one daemon per state directory); start the
embedded CouchDB when no URL is configured; create the database, its security and design
documents; make the API token on first start; serve HTTP (HTTPS with server.tls_cert);
load the scheduler's window; bring back the workers that were running.

Shutdown (SIGTERM, SIGINT, ``systemctl stop``): stop claiming; stop workers gracefully
(running jobs get ``workers.shutdown_timeout`` seconds, then are interrupted and follow
their retry policy); close HTTP; stop the embedded CouchDB. Signal handlers only set an
event; the main coroutine does the work. No step's failure stops the others (whatever
tasks are held): each is logged, the exit status is 1 when one failed, and how the
daemon ended is recorded in ``<state>/daemon-exit.json`` for ``after shutdown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import ipaddress
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TextIO, TypeVar

from aiohttp import web

from after import catchup, model, provision, timing, tls
from after import registry as registry_mod
from after.api import create_app
from after.config import Settings, redact_url
from after.dispatch import Dispatchers
from after.embedded import ADMIN, USER, EmbeddedCouch
from after.errors import AfterError, ConfigError
from after.notifier import Notifier
from after.remotes import RemoteWorkers
from after.scheduler import Scheduler
from after.store import Store
from after.supervisor import Supervisor

log = logging.getLogger("after.daemon")

#: How the last daemon of a state directory ended (see :meth:`Daemon._write_exit`).
EXIT_FILE = "daemon-exit.json"

T = TypeVar("T")


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class StateLock:
    """An exclusive lock on ``<state>/daemon.lock``: a second daemon on the same state fails clearly."""

    def __init__(self, state: Path) -> None:
        self.path = state / "daemon.lock"
        self._f: TextIO | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")  # noqa: SIM115 - held for the daemon's life
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            other = f.read().strip()
            f.close()
            raise ConfigError(f"another After daemon (pid {other or '?'}) uses state directory {self.path.parent}") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._f = f

    def release(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def check_bind(settings: Settings) -> None:
    if not is_loopback(settings.server_host) and not settings.server_api_token:
        raise ConfigError(
            f"refusing to listen on {settings.server_host}: binding beyond loopback needs a configured "
            "token (server.api_token or AFTER_API_TOKEN), not a generated one"
        )


async def prepare_store(settings: Settings, embedded: EmbeddedCouch | None) -> Settings:
    """Make the database usable; return settings with the CouchDB credentials workers use.

    The embedded server is After's own: its admin writes the database's ``_security``
    (merging After's roles into what is there). Any other CouchDB is the operator's: the
    daemon only checks ``_security`` and warns about what lacks (`after setup` adds it).
    """
    if embedded is not None:
        async with Store(embedded.url, settings.couchdb_database, user=ADMIN, password=embedded.admin_password) as admin:
            await provision.setup(admin, create=True, security="merge")
            await provision.ensure_user(admin, USER, embedded.user_password, [model.WORKER_ROLE])
        return dataclasses.replace(settings, couchdb_url=embedded.url, couchdb_user=USER, couchdb_password=embedded.user_password)
    async with Store(settings.couchdb_url, settings.couchdb_database, user=settings.couchdb_user or None, password=settings.couchdb_password or None) as store:
        try:
            await provision.setup(store, create=True, security="check")
        except AfterError as exc:
            # Shut out by _security, CouchDB down or answering garbage: the daemon comes up
            # all the same; /health says why, and its loops retry (and write the design
            # document) until the store works (see after/loops.py).
            log.warning("setting up database %s: %s; starting anyway (/health says why), retrying in the background", settings.couchdb_database, exc.message)
    return settings


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded: EmbeddedCouch | None = None
        self.stop_event = asyncio.Event()
        self.lock = StateLock(settings.state_path)
        #: The shutdown steps that failed (logged); a daemon with any exits non-zero.
        self.failures: list[str] = []

    async def run(self, *, ready: asyncio.Event | None = None) -> None:
        s = self.settings
        check_bind(s)
        # Before anything starts: a certificate that cannot serve stops the daemon here.
        ssl_context = tls.server_context(s.server_tls_cert, s.server_tls_key) if s.tls else None
        self.lock.acquire()
        runner: web.AppRunner | None = None
        scheduler: Scheduler | None = None
        supervisor: Supervisor | None = None
        remotes: RemoteWorkers | None = None
        bg: list[asyncio.Task[Any]] = []
        store: Store | None = None
        registry: registry_mod.Registry | None = None
        notifier: Notifier | None = None
        try:
            if s.embedded:
                self.embedded = EmbeddedCouch(s.state_path, binary=s.couchdb_embedded_server or None)
                await self.embedded.start()
                bg.append(asyncio.create_task(self.embedded.supervise(), name="embedded couchdb"))
            worker_settings = await prepare_store(s, self.embedded)
            log.info("CouchDB %s, database %s", redact_url(worker_settings.couchdb_url), s.couchdb_database)
            token = s.ensure_token()
            store = Store(worker_settings.couchdb_url, s.couchdb_database, user=worker_settings.couchdb_user, password=worker_settings.couchdb_password)
            await store.open()
            sched_holder: list[Scheduler] = []

            async def on_lost(worker: str, docs: list[dict[str, Any]]) -> None:
                await sched_holder[0].worker_lost(worker, docs)

            def on_change(worker: str) -> None:
                if sched_holder:
                    sched_holder[0].worker_available(worker)
                    sched_holder[0].loops.wake()  # a worker wrote to the store (or its writes work again)
                    if sched_holder[0].registry is not None:
                        sched_holder[0].registry.soon()

            supervisor = Supervisor(s, worker_settings=dataclasses.asdict(worker_settings), on_lost=on_lost, on_change=on_change)
            remotes = RemoteWorkers(store, s, on_change=on_change, local=supervisor.knows)
            scheduler = Scheduler(store, s, Dispatchers(supervisor, remotes), daemon_id=registry_mod.daemon_id())
            sched_holder.append(scheduler)
            sup = supervisor

            def describe() -> dict[str, Any]:
                keys = ("name", "state", "running", "pid", "concurrency", "running_tasks", "tasks_run", "restarts")
                workers = [{**{k: w[k] for k in keys if k in w}, "backlog": scheduler.backlog(w["name"])} for w in sup.list()]
                # Remote workers' sessions held here: other daemons list them, and leave their tasks to us.
                remote_keys = (*keys, "remote", "host", "address", "session", "client", "connected", "last_heartbeat", "live")
                workers += [{**{k: w[k] for k in remote_keys if k in w}, "backlog": scheduler.backlog(w["name"])} for w in remotes.list()]
                tick = timing.fmt(timing.from_ts(scheduler.last_tick)) if scheduler.last_tick else None
                return {"url": s.base_url, "workers": workers, "quorum": "lost" if scheduler.quorum_lost_since else "ok", "tick": tick}

            registry = registry_mod.Registry(
                store, scheduler.daemon_id, describe=describe, interval=s.scheduler_heartbeat_seconds, on_quorum=scheduler.note_quorum, loops=scheduler.loops
            )
            scheduler.registry = registry
            notifier = Notifier(store, s, daemon_id=scheduler.daemon_id, state_path=s.state_path)
            scheduler.listeners.append(notifier.observe)  # completion webhooks (after/notifier.py)
            scheduler.catchup = catchup.Catchup(store, s.state_path, ahead=s.scheduler_claim_ahead, window=s.scheduler_window_seconds)
            for observed in (supervisor, remotes):
                observed.start_observers.append(lambda worker, job, lag: scheduler.fire_lags.append((time.time(), lag)))
            extra = {"embedded": self.embedded, "notifier": notifier}
            app = create_app(s, store=store, supervisor=supervisor, scheduler=scheduler, token=token, remotes=remotes, extra=extra)
            # Workers first: they need nothing of the scheduler or the port, and the daemon is
            # expected to have them back as soon as it answers (GET /workers/NAME, not a 404).
            await supervisor.restore()
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, s.server_host, s.server_port, ssl_context=ssl_context, reuse_address=True)
            try:
                await site.start()
            except OSError as exc:
                raise ConfigError(f"cannot listen on {s.server_host}:{s.server_port}: {exc.strerror}") from None
            try:
                await registry.beat()  # known to the others before the first claim
            except AfterError as exc:
                await scheduler.loops.failure("heartbeat", exc)  # logged; retried by the heartbeat loop
            notifier.start()
            await scheduler.start()
            registry.start()
            self._write_pidfile()
            log.info("After daemon %s listening on %s (state in %s)", scheduler.daemon_id, s.base_url, s.state_path)
            if ready is not None:
                ready.set()
            await self.stop_event.wait()
            log.info("shutting down: no new claims; stopping workers (up to %gs for running jobs)", s.workers_shutdown_timeout)
        except Exception as exc:
            self.failures.append(f"running: {exc!r}")
            raise
        finally:
            # Every step is attempted whatever the others did: one that fails is logged and
            # counted (the exit status says so), never the end of the shutdown. Above all
            # the embedded server is stopped, and workers.json keeps every worker.
            if scheduler is not None:
                await self._step("stopping the scheduler", scheduler.stop())
            if notifier is not None:
                await self._step("stopping the webhooks", notifier.stop())
            # Local and remote workers finish their running jobs side by side (HTTP still
            # answers, for the remote ones' finish calls).
            async def no_remotes() -> None:
                return None

            async def no_workers() -> list[str]:
                return []

            _, failed = await asyncio.gather(
                self._step("stopping the remote workers' sessions", remotes.close(s.workers_shutdown_timeout) if remotes is not None else no_remotes()),
                self._step("stopping the workers", supervisor.stop_all() if supervisor is not None else no_workers()),
            )
            self.failures.extend(failed or [])
            if registry is not None:
                await self._step("stopping the heartbeat", registry.stop())
            if runner is not None:
                await self._step("closing HTTP", runner.cleanup())
            if store is not None:
                await self._step("closing the store", store.close())
            for t in bg:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            if self.embedded is not None:
                await self._step("stopping the embedded CouchDB", asyncio.to_thread(self.embedded.stop))
            with contextlib.suppress(OSError):
                (s.state_path / "daemon.json").unlink()
            self._write_exit()
            self.lock.release()
            if self.failures:
                log.error("stopped, with %d failed step(s): %s", len(self.failures), "; ".join(self.failures))
            else:
                log.info("stopped")

    async def _step(self, what: str, step: Awaitable[T]) -> T | None:
        """Run one shutdown step; a failure is logged and recorded in ``failures``, not raised."""
        try:
            return await step
        except Exception as exc:
            log.exception("shutdown: %s failed", what)
            self.failures.append(f"{what}: {exc!r}")
            return None

    def _write_exit(self) -> None:
        """Record how this daemon ended in ``<state>/daemon-exit.json`` for ``after shutdown``.

        ``after shutdown`` is not the daemon's parent and cannot read its exit status:
        it reads this (written last, atomically), and a daemon that exited without
        writing it crashed.
        """
        path = self.settings.state_path / EXIT_FILE
        data = {"pid": os.getpid(), "clean": not self.failures, "failures": self.failures, "time": time.time()}
        try:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, path)
        except OSError as exc:
            log.error("cannot write %s: %s", path, exc)

    def _write_pidfile(self) -> None:
        path = self.settings.state_path / "daemon.json"
        path.write_text(json.dumps({"pid": os.getpid(), "url": self.settings.base_url}))

    def stop(self) -> None:
        self.stop_event.set()


def serve(settings: Settings) -> int:
    """Run the daemon in the foreground until SIGTERM or SIGINT; the exit status.

    0 when every shutdown step succeeded, 1 when one failed (each is logged, and
    recorded for ``after shutdown`` in ``<state>/daemon-exit.json``).
    """

    async def main() -> int:
        daemon = Daemon(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, daemon.stop)
        await daemon.run()
        return 1 if daemon.failures else 0

    return asyncio.run(main())
