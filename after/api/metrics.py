"""``GET /metrics``: Prometheus text, through prometheus-client, one registry per app.

One registry per application (not the library's global one) so that several apps in
one process (tests, the in-process scheduler) never share or double-register series.

Two kinds of series:

- pushed as they happen, by observers the scheduler, supervisor and store call:
  fire lag, tick duration, dispatched and finished tasks per worker and job, store
  request latency;
- read when scraped: tasks by status (one reduce query on the ``by_status`` view),
  scheduler actions, worker restarts and liveness.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from after import model
from after.errors import AfterError

REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("metrics_registry", CollectorRegistry)
RENDER: web.AppKey[Callable[[], Awaitable[bytes]]] = web.AppKey("metrics_render")
_LAG_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)
_STORE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def install(app: web.Application) -> None:
    """Create the registry and hook the observers; the render function runs at each scrape."""
    from after.api import EXTRA, REMOTES, SCHEDULER, STORE, SUPERVISOR

    reg = CollectorRegistry()
    app[REGISTRY] = reg
    tasks = Gauge("after_tasks", "Tasks stored, by status", ["status"], registry=reg)
    lag = Histogram("after_fire_lag_seconds", "Job start minus due time", ["worker", "job"], buckets=_LAG_BUCKETS, registry=reg)
    tick = Histogram("after_tick_duration_seconds", "Duration of one scheduler tick", buckets=_LAG_BUCKETS, registry=reg)
    actions = Counter(
        "after_scheduler_actions_total", "Scheduler actions by kind (fired, lost, recovered, expired, missed, canceled, invalid)", ["kind"], registry=reg
    )
    dispatched = Counter("after_tasks_dispatched_total", "Tasks this daemon claimed and handed to a worker, by worker and job", ["worker", "job"], registry=reg)
    finished = Counter(
        "after_tasks_finished_total",
        "Attempts a worker of this daemon finished, by worker, job and the status written (done, err, reschedule for a retry or the next cron run, canceled)",
        ["worker", "job", "status"],
        registry=reg,
    )
    restarts = Gauge("after_worker_restarts", "Restarts of each worker process since it was started", ["worker"], registry=reg)
    running = Gauge("after_worker_running", "1 when the worker process runs", ["worker"], registry=reg)
    job_processes = Gauge("after_worker_job_processes", "Warm job processes of each worker (isolated jobs), idle or busy", ["worker"], registry=reg)
    contained = Counter(
        "after_contained_failures_total",
        "Failures contained to the one task that caused them (that task ended err, reason internal), by where: observe, plan, fire, recover, ..., worker",
        ["where"],
        registry=reg,
    )
    contained_seen: dict[str, int] = {}
    loop_failing = Gauge(
        "after_loop_failing",
        "1 while a background loop fails, by loop (window, changes, purge, tick, heartbeat, load; a worker's as worker/NAME/LOOP) and cause",
        ["loop", "cause"],
        registry=reg,
    )
    loop_errors = Counter("after_loop_errors_total", "Failed steps of each background loop of the daemon (each retry counts)", ["loop"], registry=reg)
    loop_seen: dict[str, int] = {}
    failing_shown: set[tuple[str, str]] = set()
    store_latency = Histogram("after_store_request_seconds", "CouchDB request latency by verb", ["verb"], buckets=_STORE_BUCKETS, registry=reg)

    def on_dispatch(seconds: float, worker: str, job: str) -> None:
        dispatched.labels(worker, job).inc()

    def on_start(worker: str, job: str, seconds: float) -> None:
        lag.labels(worker, job).observe(seconds)

    sched = app[SCHEDULER]
    sched.lag_observers.append(on_dispatch)
    sched.tick_observers.append(tick.observe)
    app[STORE].observers.append(lambda verb, seconds: store_latency.labels(verb).observe(seconds))
    for observed in (app[SUPERVISOR], app[REMOTES]):  # local workers and remote ones alike
        observed.start_observers.append(on_start)
        observed.finish_observers.append(lambda worker, job, status: finished.labels(worker, job, status or "unknown").inc())
    remote_sessions = Gauge("after_remote_worker_sessions", "Remote workers' sessions this daemon holds, by worker name", ["worker"], registry=reg)
    remote_shown: set[str] = set()
    seen: dict[str, int] = {}
    hooks = Counter(
        "after_webhook_deliveries_total",
        "Webhook deliveries by how they ended: delivered, failed (attempts used up, or refused), dropped (queue full)",
        ["outcome"],
        registry=reg,
    )
    hooks_seen: dict[str, int] = {}

    async def render() -> bytes:
        try:
            counts = await app[STORE].count_by_status()
        except AfterError:
            counts = None  # keep the last values; /health says why the store fails
        if counts is not None:
            for status in model.STATUSES:
                tasks.labels(status).set(counts.get(status, 0))
        for kind, value in sched.counters.items():
            delta = value - seen.get(kind, 0)
            if delta > 0:
                actions.labels(kind).inc(delta)
            seen[kind] = value
        runners = {"worker": sum(app[SUPERVISOR].contained.values())}
        for where, value in [*sched.contained.items(), *runners.items()]:
            delta = value - contained_seen.get(where, 0)
            if delta > 0:
                contained.labels(where).inc(delta)
            contained_seen[where] = value
        failing_now = {(st.name, st.cause or "") for st in sched.loops.failing()}
        failing_now |= {(f"worker/{name}/{loop}", cause) for name, loop, cause, _ in app[SUPERVISOR].failing_loops()}
        for labels in failing_shown | failing_now:
            loop_failing.labels(*labels).set(1 if labels in failing_now else 0)
        failing_shown.update(failing_now)
        for st in sched.loops.states.values():
            loop_errors.labels(st.name).inc(max(0, st.errors - loop_seen.get(st.name, 0)))
            loop_seen[st.name] = st.errors
        for info in app[SUPERVISOR].list():
            restarts.labels(info["name"]).set(info["restarts"])
            running.labels(info["name"]).set(1 if info["running"] else 0)
            job_processes.labels(info["name"]).set(info.get("job_processes", 0))
        sessions: dict[str, int] = {}
        for info in app[REMOTES].list():
            sessions[info["name"]] = sessions.get(info["name"], 0) + 1
        for name in remote_shown | set(sessions):
            remote_sessions.labels(name).set(sessions.get(name, 0))
        remote_shown.update(sessions)
        if (notifier := app[EXTRA].get("notifier")) is not None:
            for outcome in ("delivered", "failed", "dropped"):
                value = notifier.counts.get(outcome, 0)
                hooks.labels(outcome).inc(max(0, value - hooks_seen.get(outcome, 0)))
                hooks_seen[outcome] = value
        return generate_latest(reg)

    app[RENDER] = render


async def respond(app: web.Application) -> web.Response:
    body = await app[RENDER]()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
