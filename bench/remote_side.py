"""W7: W2's drain by a remote worker (issue 15, point 6).

The same tasks as W2 (``n`` due now, stored while no worker runs, the inline no-op
``stamp`` recording its start in the job), but the worker is a separate process
speaking the worker protocol over the daemon's REST port: ``python -m after.client``
at concurrency 100, with ``bench/remotejobs.py`` (``stamp`` on ``after.client``'s
context). Measured as W2 is (bench/after_side.py ``_drain``: first job start to last
``finished`` in the store), so the table sets the two rates side by side: the target is
W7 >= 50 % of W2 in the same run (bench/targets.py).

A task is counted finished once the store says ``done`` (``GET /stats``), not when the
worker's finish call is taken: a finish is answered once written, but the session's
counter moves when the call arrives.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.after_side import _LIVE, BENCH, JOB, ROOT, WORKER, Ctx, Daemon, _drain, end_process, wait_for
from bench.procstat import CpuMeter

#: The remote worker's concurrency (the issue's: "a remote Python worker at concurrency 100").
W7_CONCURRENCY = 100


def done_count(d: Daemon) -> int:
    """Tasks the store holds ``done`` (the by_status view, through ``GET /stats``)."""
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        status, body = d.api("GET", "/stats", timeout=30)
        if status == 200:
            return int((body.get("counts") or {}).get("done") or 0)
    return 0


def sessions(d: Daemon) -> int:
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        _, body = d.api("GET", "/workers?here=1", timeout=5)
        return sum(1 for w in body.get("workers") or [] if w.get("name") == WORKER and w.get("remote") and w.get("live"))
    return 0


def remote_worker(stack: contextlib.ExitStack, d: Daemon, concurrency: int, meter: CpuMeter) -> Callable[[], int]:
    """Start ``python -m after.client`` for the bench worker (stopped by ``stack``)."""
    token = d.state / "token"
    log = d.state / "remote-worker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTER_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(BENCH), str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "after.client", "--url", d.base, "--name", WORKER, "--token-file", str(token), "--jobs", "remotejobs"]
    cmd += ["--concurrency", str(concurrency)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT)
    _LIVE.add(proc)

    stack.callback(end_process, proc, signal.SIGTERM, 30)
    meter.add("remote_worker", proc.pid)
    if not wait_for(lambda: sessions(d) > 0 or proc.poll() is not None, time.monotonic() + 60):
        raise RuntimeError(f"the remote worker did not connect within 60 s: {log.read_text()[-1000:]}")
    if proc.poll() is not None:
        raise RuntimeError(f"the remote worker exited with {proc.returncode}: {log.read_text()[-1000:]}")
    return lambda: done_count(d)


def w7(ctx: Ctx) -> dict[str, Any]:
    """W2's tasks drained by a remote ``after.client`` worker at concurrency 100."""
    res = _drain(ctx, "W7", ctx.sizes.w2_n, JOB, W7_CONCURRENCY, None, worker=remote_worker)
    res["notes"] = f"remote worker: python -m after.client at concurrency {W7_CONCURRENCY}, over the REST port; {res['notes']}"
    return res
