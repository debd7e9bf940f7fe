"""A named worker process: ``python -m after.worker --name NAME --fd FD``.

Started and supervised by the daemon (:mod:`after.supervisor`), never by hand. It talks
to the daemon over one Unix socket (inherited as ``--fd``), one JSON object per line:

daemon -> worker: ``{"op": "run", "task": {...}}`` (a claimed task),
``{"op": "cancel", "id": ...}``, ``{"op": "stop", "timeout": s}``.

worker -> daemon: ``{"op": "hello", "pid", "jobs"}``,
``{"op": "started", "id", "job", "lag", "lease"}`` (how many seconds after its due time the job
started; sent when the job ends, to keep the start itself lean),
``{"op": "finished", "id", "status", "job"}``, ``{"op": "job_group", "id", "pgid",
"running"}`` (a job started or ended a process group: the daemon kills the groups
still running when this process dies, see :mod:`after.procgroup`), ``{"op": "dropped",
"id"}`` (a task this worker could not take: not running here).

A message that cannot be handled is logged with its task id and costs only that task:
the loop goes on with the next one.

The worker writes task statuses into CouchDB itself (:class:`after.runner.Runner`);
the channel only carries work and acknowledgements. Its settings, CouchDB credentials
included, arrive in the ``AFTER_WORKER_SETTINGS`` environment variable (JSON), never on
the command line where ``ps`` would show them. Its stdout and stderr are the daemon's
pipe into the worker's log file. When the channel closes (the daemon died) or on
SIGTERM, it stops taking work, lets running jobs finish up to the shutdown timeout, and
exits.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
from typing import Any

from after import jobs, procgroup
from after.config import Settings
from after.errors import ConfigError
from after.runner import Runner
from after.store import Store

log = logging.getLogger("after.worker")


def settings_from_env() -> Settings:
    # Taken out of the environment: the jobs' processes (shell commands) inherit it, and it
    # holds the CouchDB password and the API token.
    raw = os.environ.pop("AFTER_WORKER_SETTINGS", "{}")
    data = json.loads(raw)
    known = {f.name for f in dataclasses.fields(Settings)}
    return Settings(**{k: v for k, v in data.items() if k in known})


async def serve(name: str, fd: int, modules: list[str], concurrency: int) -> int:
    settings = settings_from_env()
    try:
        registry = jobs.load(modules, settings.jobs)
    except ConfigError as exc:
        log.error("%s", exc.message)
        return 3
    store = Store(settings.couchdb_url, settings.couchdb_database, user=settings.couchdb_user, password=settings.couchdb_password)
    await store.open()
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=64 * 1024 * 1024)

    def send(msg: dict[str, Any]) -> None:
        if writer.is_closing():
            return
        writer.write(json.dumps(msg).encode() + b"\n")

    runner = Runner(store, name=name, registry=registry, settings=settings, concurrency=concurrency, notify=send, modules=modules)
    # Every job process group, so that the daemon kills them if this process dies.
    procgroup.set_listener(lambda event, task_id, pgid: send({"op": "job_group", "id": task_id, "pgid": pgid, "running": event == "start"}))
    runner.prestart()
    send({"op": "hello", "pid": os.getpid(), "jobs": sorted(registry), "concurrency": concurrency})
    log.info("worker %s started (pid %d), jobs: %s", name, os.getpid(), ", ".join(sorted(registry)))

    stop_timeout = settings.workers_shutdown_timeout
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    # Ctrl-C in the daemon's terminal is the daemon's to handle, in order.
    loop.add_signal_handler(signal.SIGINT, lambda: None)

    async def read() -> None:
        while True:
            line = await reader.readline()
            if not line:
                log.warning("channel to the daemon closed; finishing running jobs and exiting")
                return
            try:
                msg = json.loads(line)
            except ValueError:
                log.error("bad message from the daemon: %r", line[:200])
                continue
            try:
                if handle(msg):
                    return
            except Exception:
                # One bad message costs its own task, never the worker and its other tasks.
                task_id = _task_id(msg)
                log.exception("task %s: cannot handle message %r from the daemon", task_id, line[:200])
                if isinstance(msg, dict) and msg.get("op") == "run" and task_id is not None and task_id not in runner.running:
                    # Never started: the daemon must stop counting it as running here, or it
                    # would never be recovered (its lease ends, and the scheduler takes it back).
                    send({"op": "dropped", "id": task_id})

    def handle(msg: Any) -> bool:
        """Act on one message from the daemon; True when it says stop."""
        nonlocal stop_timeout
        op = msg.get("op")
        if op == "run":
            runner.submit(msg["task"])
        elif op == "cancel":
            runner.cancel(msg["id"])
        elif op == "stop":
            stop_timeout = float(msg.get("timeout", stop_timeout))
            return True
        return False

    reading = asyncio.create_task(read())
    waiting = asyncio.create_task(stopping.wait())
    await asyncio.wait({reading, waiting}, return_when=asyncio.FIRST_COMPLETED)
    failed = reading.exception() if reading.done() and not reading.cancelled() else None
    if failed is not None:
        log.error("reading the channel to the daemon failed: %r; finishing running jobs and exiting", failed)
    if waiting.done() or failed is not None:
        # Not asked by the daemon: it must stop sending work here at once (and restart us).
        send({"op": "stopping", "reason": "SIGTERM" if waiting.done() else "reading its channel failed"})
    reading.cancel()
    waiting.cancel()
    log.info("worker %s stopping: %d running job(s), waiting up to %gs", name, len(runner.running), stop_timeout)
    await runner.drain(stop_timeout)
    await store.close()
    writer.close()
    log.info("worker %s stopped", name)
    return 0


def _task_id(msg: Any) -> str | None:
    """The task a daemon message is about, for the log; None if it names none."""
    if not isinstance(msg, dict):
        return None
    task = msg.get("task")
    task_id = task.get("_id") if isinstance(task, dict) else msg.get("id")
    return task_id if isinstance(task_id, str) else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="after-worker")
    parser.add_argument("--name", required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--jobs", action="append", default=[])
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s worker[{args.name}] %(message)s",
        stream=sys.stdout,
    )
    sys.exit(asyncio.run(serve(args.name, args.fd, args.jobs, args.concurrency)))


if __name__ == "__main__":
    main()
