"""The HTTP API: one aiohttp application on one port (routes in :mod:`after.api.routes`).

The daemon builds it with :func:`create_app` and owns what it is given (store,
supervisor, scheduler); the application only reads them, so the same handlers serve a
daemon and a test alike.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from after import tokens
from after.api import middleware
from after.api.events import EventHub
from after.config import Settings
from after.remotes import RemoteWorkers
from after.scheduler import Scheduler
from after.service import Tasks
from after.store import Store
from after.supervisor import Supervisor

SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
STORE: web.AppKey[Store] = web.AppKey("store", Store)
TASKS: web.AppKey[Tasks] = web.AppKey("tasks", Tasks)
SUPERVISOR: web.AppKey[Supervisor] = web.AppKey("supervisor", Supervisor)
SCHEDULER: web.AppKey[Scheduler] = web.AppKey("scheduler", Scheduler)
EVENTS: web.AppKey[EventHub] = web.AppKey("events", EventHub)
STARTED: web.AppKey[float] = web.AppKey("started", float)
EXTRA: web.AppKey[dict[str, Any]] = web.AppKey("extra", dict)
REMOTES: web.AppKey[RemoteWorkers] = web.AppKey("remotes", RemoteWorkers)

UI_DIR = Path(__file__).resolve().parent.parent / "ui"


def create_app(
    settings: Settings,
    *,
    store: Store,
    supervisor: Supervisor,
    scheduler: Scheduler,
    token: str,
    remotes: RemoteWorkers | None = None,
    extra: dict[str, Any] | None = None,
) -> web.Application:
    """Build the application. The daemon owns the store, supervisor and scheduler lifecycles."""
    from after.api import metrics, pauseapi, routes, tokenapi, workerapi  # noqa: F401  (their routes join routes.ROUTES)

    chain: list[Any] = [middleware.errors, middleware.auth]
    if settings.server_cors_origins:
        # Outermost: a preflight is answered before anything else looks at the request.
        chain.insert(0, middleware.cors(settings.server_cors_origins))
    app = web.Application(middlewares=chain, client_max_size=settings.server_max_body_bytes)
    app[SETTINGS] = settings
    app[STORE] = store
    app[TASKS] = Tasks(store, settings, by="api")
    app[SUPERVISOR] = supervisor
    app[SCHEDULER] = scheduler
    app[REMOTES] = remotes if remotes is not None else RemoteWorkers(store, settings, on_change=scheduler.worker_available, local=supervisor.knows)
    app[STARTED] = time.time()
    app[EXTRA] = extra or {}
    app[middleware.TOKEN] = token
    app[middleware.PROTECT_READS] = settings.server_protect_reads
    app[middleware.MAX_BODY] = settings.server_max_body_bytes
    app[middleware.ROUTE_RULES] = {}
    cache = tokens.TokenCache(functools.partial(tokenapi.load, store))
    app[middleware.TOKENS] = cache
    scheduler.listeners.append(cache.observe)
    hub = EventHub(store)
    app[EVENTS] = hub
    scheduler.listeners.append(hub.publish)
    routes.install(app)
    metrics.install(app)
    if settings.server_cors_origins:
        app.on_response_prepare.append(middleware.cors_headers)
    return app
