"""After's side of the benchmark: W1-W7 and the store limit, measured on real daemons.

Each workload gets its own database on one CouchDB-compatible server (the embedded
pouchdb-server this module starts, or the CouchDB named by ``AFTER_BENCH_COUCHDB_URL``),
its own state directory and port, and its own ``after serve`` process (through
``bench/daemon_probe.py``, which only adds a per-tick duration log). Workers are
started over REST with the job module ``bench/benchjobs.py``, whose ``stamp`` job
records ``time.time()`` at its start in a file, as the peers do inside their jobs.

What is measured, and from where:

* **store limit** -- ``_bulk_docs`` docs/s (batches of 500 task-sized documents, one
  request at a time) and single-document writes/s (sequential, and 32 in flight),
  with a plain aiohttp client: the server's own ceiling, not After's.
* **W1** -- ``n`` tasks due at one whole second, created by one ``POST /tasks`` 4 s
  before it; lag = job start (recorded in the job) minus the due second.
* **W2** -- ``n`` tasks due now, created through ``POST /tasks`` while no worker runs
  (the daemon holds them); then the worker starts. Throughput from the first to the last
  ``finished`` time of the ``done`` documents in the store.
* **W3** -- ``small`` and ``big`` stored future tasks (written with ``_bulk_docs``
  before the daemon starts; the agenda view is built before it starts too), then
  ``rate`` tasks due at every whole second for ``seconds``: per-tick durations from the
  probe, the daemon's RSS from /proc every 0.5 s.
* **W4** -- the worker is started once (so the daemon restores it), the daemon is
  stopped, ``n`` tasks that fell due over the last ``span`` seconds are stored in the
  seeded order of :func:`bench.peers.w4_due_times`, and the daemon is started: drain
  time from the spawn of the daemon to the last job start; in-order fraction over the
  job-start order.
* **W5** -- ``clients`` concurrent clients each POST one task at a time for ``seconds``.
* **W6** -- W2 with ``plain_stamp``, a plain function under ``@job()`` at the default
  isolation (the runner runs it in a job process), bounded by ``w6_deadline_s``: what
  was done by then, and the job processes' CPU (the worker's children).
* **W7** -- W2 drained by a remote worker process (``python -m after.client``, at
  concurrency 100, over the REST port): bench/remote_side.py.

Every workload also reports the CPU seconds each process (daemon, workers, embedded
server) used during its measured phase: the first answer to "where does the time go".
All loops are bounded by deadlines; every process started here is stopped in
``finally`` blocks, and an ``atexit`` hook kills any daemon left behind.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from after import model, provision, timing
from after.config import Settings
from after.embedded import ADMIN, EmbeddedCouch, free_port
from after.store import Store, split_credentials

try:
    from bench.peers import W4_SEED, w4_due_times
    from bench.procstat import CpuMeter, cpu_seconds, rss_mb
    from bench.stats import in_order_fraction, percentile, summarize_ms
except ModuleNotFoundError:  # run as a script from bench/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.peers import W4_SEED, w4_due_times
    from bench.procstat import CpuMeter, cpu_seconds, rss_mb
    from bench.stats import in_order_fraction, percentile, summarize_ms

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORKER = "bench"
JOB = "stamp"  # inline (W1-W5)
PLAIN_JOB = "plain_stamp"  # a plain @job() function at the default isolation (W6)
#: The bench's own CouchDB user (role after_worker). Not "after": on a production
#: CouchDB named by AFTER_BENCH_COUCHDB_URL the real user must keep its password.
BENCH_USER = "after_bench"


@dataclass(frozen=True)
class Sizes:
    """How big each workload is. ``full`` is the issue's definition; the others shrink it."""

    name: str
    bulk_docs: int  # store limit: documents written through _bulk_docs
    single_writes: int  # store limit: sequential single writes (x4 with 32 in flight)
    w1_n: int
    w2_n: int
    w3_small: int
    w3_big: int
    w3_seconds: int
    w3_rate: int
    w4_n: int
    w4_span_s: float
    w5_seconds: float
    w5_clients: int
    concurrency: int  # the bench worker's concurrency (slots; its jobs are coroutines): 1,000, so
    # W1's 1,000 tasks due at one second each have a slot, as the peers' thread pools
    # need none (their no-ops run one after another)
    lead_s: float  # W1/W3: how far ahead of the first due second tasks are created
    w6_n: int = 20_000  # W6: W2's n, with a plain @job() function at the default isolation
    w6_deadline_s: float = 120.0  # W6 stops this long after its first job and reports what finished


#: The daemon claims tasks this long before their due time (its default setting):
#: the ticks that fire a second's tasks run that much earlier.
CLAIM_AHEAD = Settings().scheduler_claim_ahead

FULL = Sizes("full", 20_000, 1_000, 1_000, 20_000, 10_000, 1_000_000, 60, 100, 10_000, 60.0, 20.0, 32, 1_000, 4.0, 20_000, 120.0)
# Peer sizes in quick mode are bench/peers.py's (W2 2,000, W4 1,000 over 10 s). W3 is
# scaled down to 10,000 vs 1,000 for 5 s: building the agenda view runs at about 1,200
# documents/s on the embedded server, so even 100,000 would take the quick run past
# its two minutes.
QUICK = Sizes("quick", 4_000, 200, 1_000, 2_000, 1_000, 10_000, 5, 100, 1_000, 10.0, 5.0, 32, 1_000, 3.0, 2_000, 30.0)
# W6 is W2 with an isolated job, bounded by a deadline (while every run starts an
# interpreter, ~8 tasks/s: 2,000 would take 4 minutes). Smoke runs 10 in 10 s at most
# so that `make test`'s smoke benchmark stays about 30 s.
SMOKE = Sizes("smoke", 500, 30, 50, 50, 100, 1_000, 2, 20, 50, 2.0, 2.0, 8, 50, 1.5, 10, 10.0)
SIZES = {s.name: s for s in (FULL, QUICK, SMOKE)}


# ------------------------------------------------------------------------------------------------
# Processes and /proc


_LIVE: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    """Last resort: a daemon must not outlive the benchmark, whatever happened."""
    for proc in list(_LIVE):
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


# ------------------------------------------------------------------------------------------------
# The server


def _auth(user: str | None, password: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if user:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode()
    return headers


class Couch:
    """The one CouchDB-compatible server of a run: admin access and the bench's worker user."""

    def __init__(self, url: str, admin: str | None, admin_password: str | None, embedded: EmbeddedCouch | None = None) -> None:
        self.url = url.rstrip("/")
        self.admin = admin
        self.admin_password = admin_password
        self.embedded = embedded
        self.worker_password = secrets.token_urlsafe(16)
        #: The server's welcome (``GET /``): its name and version label the table's rows.
        self.welcome: dict[str, Any] = {}

    @classmethod
    def start(cls, admin_url: str | None, workdir: Path) -> Couch:
        """Use the server at ``admin_url`` (credentials in it), or start an embedded one."""
        if admin_url:
            base, user, password = split_credentials(admin_url)
            couch = cls(base, user, password)
        else:
            emb = EmbeddedCouch(workdir / "couchdb-server")
            asyncio.run(emb.start())
            couch = cls(emb.url, ADMIN, emb.admin_password, emb)
        try:
            asyncio.run(couch._prepare())
        except BaseException:
            couch.stop()
            raise
        return couch

    async def _prepare(self) -> None:
        async with self.session(timeout=30) as s, s.get(self.url + "/") as resp:
            welcome = await resp.json(content_type=None)
        self.welcome = welcome if isinstance(welcome, dict) else {}
        async with self.store("_users", admin=True) as admin:
            await provision.ensure_system_db(admin, "_replicator")
            await provision.ensure_user(admin, BENCH_USER, self.worker_password, [model.WORKER_ROLE])

    def stop(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()

    def ensure_alive(self) -> str | None:
        """Restart the embedded server if it died (as After's daemon does its own); say so.

        Seen once in a full run: the server exited after W2 and every later workload
        failed to connect. A run reports that instead of losing the rest of its figures.
        """
        emb = self.embedded
        if emb is None or (emb.proc is not None and emb.proc.poll() is None):
            return None
        code = emb.proc.returncode if emb.proc is not None else None
        asyncio.run(emb.resume())
        asyncio.run(self._prepare())
        return f"the embedded server had exited (code {code}) and was restarted before this workload"

    @property
    def server_pid(self) -> int | None:
        proc = self.embedded.proc if self.embedded is not None else None
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def product(self) -> str:
        """What the server says it is: ``couchdb 3.5.0``, ``pouchdb-server 4.2.0``."""
        w = self.welcome
        name = "couchdb" if "couchdb" in w else "pouchdb-server" if "express-pouchdb" in w else "server"
        return f"{name} {w.get('version', '?')}"

    @property
    def key(self) -> str:
        """Which of ``--servers`` this is."""
        return "embedded" if self.embedded is not None else "couchdb"

    @property
    def system(self) -> str:
        """The table's system label: ``after (embedded)``, ``after (couchdb 3.5.0)``."""
        return "after (embedded)" if self.embedded is not None else f"after ({self.product})"

    @property
    def kind(self) -> str:
        return f"embedded {self.product}" if self.embedded is not None else f"{self.product} at {self.url}"

    def store(self, db: str, *, admin: bool = False) -> Store:
        if admin:
            return Store(self.url, db, user=self.admin, password=self.admin_password)
        return Store(self.url, db, user=BENCH_USER, password=self.worker_password)

    def worker_url(self) -> str:
        scheme, rest = self.url.split("://", 1)
        return f"{scheme}://{BENCH_USER}:{quote(self.worker_password, safe='')}@{rest}"

    def session(self, *, timeout: float = 120.0, limit: int = 64) -> aiohttp.ClientSession:
        """An admin aiohttp session (the bench's own client, not After's)."""
        return aiohttp.ClientSession(
            headers=_auth(self.admin, self.admin_password),
            timeout=aiohttp.ClientTimeout(total=timeout),
            connector=aiohttp.TCPConnector(limit=limit),
        )

    def new_db(self, label: str) -> str:
        """A fresh database set up exactly as ``after setup`` does (design document included)."""
        name = f"bench-{label.lower()}-{uuid.uuid4().hex[:8]}"

        async def create() -> None:
            async with self.store(name, admin=True) as admin:
                await provision.setup(admin, create=True)

        asyncio.run(create())
        return name

    def drop_db(self, name: str) -> None:
        async def drop() -> None:
            async with self.session(timeout=300) as s, s.delete(f"{self.url}/{name}") as resp:
                await resp.read()

        with contextlib.suppress(Exception):
            asyncio.run(drop())


async def bulk_write(session: aiohttp.ClientSession, url: str, db: str, docs: Sequence[dict[str, Any]]) -> int:
    """One ``_bulk_docs`` request; returns how many documents were written."""
    async with session.post(f"{url}/{db}/_bulk_docs", data=json.dumps({"docs": list(docs)})) as resp:
        rows = await resp.json(content_type=None)
    if resp.status >= 400 or not isinstance(rows, list):
        raise RuntimeError(f"_bulk_docs answered {resp.status}: {str(rows)[:300]}")
    return sum(1 for r in rows if "error" not in r)


async def bulk_load(couch: Couch, db: str, docs: Iterator[dict[str, Any]], *, batch: int = 500, in_flight: int = 2, deadline: float) -> int:
    """Write ``docs`` in ``_bulk_docs`` batches, a few requests in flight; bounded by ``deadline``."""
    written = 0
    pending: set[asyncio.Task[int]] = set()
    async with couch.session(timeout=300) as s:
        try:
            exhausted = False
            while not exhausted or pending:
                while not exhausted and len(pending) < in_flight and time.monotonic() < deadline:
                    chunk = [d for _, d in zip(range(batch), docs, strict=False)]
                    if not chunk:
                        exhausted = True
                        break
                    pending.add(asyncio.create_task(bulk_write(s, couch.url, db, chunk)))
                if time.monotonic() >= deadline:
                    exhausted = True
                if pending:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    written += sum(t.result() for t in done)
        finally:
            for t in pending:  # interrupted: no request may outlive the session
                t.cancel()
    return written


async def warm_view(couch: Couch, db: str, view: str, *, timeout: float) -> float:
    """Query a view once (building its index); returns the seconds it took."""
    started = time.monotonic()
    async with couch.session(timeout=timeout) as s:
        async with s.get(f"{couch.url}/{db}/_design/after/_view/{view}", params={"limit": "1"}) as resp:
            await resp.read()
            if resp.status >= 400:
                raise RuntimeError(f"view {view} answered {resp.status}")
    return time.monotonic() - started


async def all_tasks(couch: Couch, db: str, *, deadline: float) -> list[dict[str, Any]]:
    """Every task document of ``db`` (paged ``_all_docs``), bounded by ``deadline``."""
    out: list[dict[str, Any]] = []
    start = json.dumps("task:")
    async with couch.session(timeout=120) as s:
        while time.monotonic() < deadline:
            params = {"include_docs": "true", "limit": "5001", "startkey": start, "endkey": json.dumps("task;")}
            async with s.get(f"{couch.url}/{db}/_all_docs", params=params) as resp:
                rows = (await resp.json(content_type=None)).get("rows", [])
            out.extend(r["doc"] for r in rows[:5000] if r.get("doc"))
            if len(rows) <= 5000:
                break
            start = json.dumps(rows[5000]["id"])
    return out


# ------------------------------------------------------------------------------------------------
# Task documents


class TaskFactory:
    """Task documents shaped exactly as ``POST /tasks`` stores them, cheaply, in bulk.

    One document is built by :func:`after.model.new_task` (the API's own code); the
    others are copies with their own id, date and arguments, so a million documents
    cost dictionary copies rather than a million validations.
    """

    def __init__(self, records: Path, job: str = JOB) -> None:
        self.records = str(records)
        self.job = job
        now = datetime.now(UTC)
        self.template = model.new_task(self.body(now.timestamp()), now=now, by="bench")

    def body(self, due: float, *, arg_due: float | None = None) -> dict[str, Any]:
        """A REST body for one task due at ``due`` (epoch seconds)."""
        return {"worker": WORKER, "date": due, "job": {"name": self.job, "arguments": [self.records, due if arg_due is None else arg_due]}}

    def doc(self, due: float) -> dict[str, Any]:
        d = dict(self.template)
        d["_id"] = f"task:{uuid.uuid4().hex}"
        d["date"] = timing.fmt(timing.from_ts(due))
        d["job"] = {"name": self.job, "arguments": [self.records, due], "kwargs": {}}
        return d


def read_records(path: Path) -> list[tuple[float, float, str]]:
    """Job starts recorded by ``benchjobs.stamp``: (started, due, task id), in start order."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            out.append((float(parts[0]), float(parts[1]), parts[2]))
    return out


def count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def wait_for(check: Callable[[], bool], deadline: float, interval: float = 0.1) -> bool:
    """Poll ``check`` until it is true or ``deadline`` (monotonic) passes."""
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# ------------------------------------------------------------------------------------------------
# The daemon


def http(base: str, method: str, path: str, body: Any = None, *, token: str | None = None, timeout: float = 60) -> tuple[int, Any]:
    """One request to the daemon; returns (status, parsed JSON or text); never raises for HTTP errors."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, payload, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, payload, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    if "json" in ctype:
        return status, json.loads(payload) if payload else None
    return status, payload.decode(errors="replace")


def end_process(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Stop a process this bench started: ``sig``, then SIGKILL after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _LIVE.discard(proc)


class Daemon:
    """One ``after serve`` process (through the tick probe) on its own state directory and port."""

    def __init__(self, couch: Couch, db: str, state: Path, *, profile_dir: Path | None = None, label: str = "") -> None:
        self.couch = couch
        self.db = db
        self.state = state
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.tick_log = state / "ticks.log"
        self.logfile = state / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.profile_dir = profile_dir
        self.label = label
        self._profiler: subprocess.Popen[bytes] | None = None
        self.starts = 0
        state.mkdir(parents=True, exist_ok=True)
        self.config = state / "after.toml"
        self.config.write_text("")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AFTER_")}
        env.update(
            {
                "AFTER_CONFIG": str(self.config),
                "AFTER_COUCHDB_URL": self.couch.worker_url(),
                "AFTER_DATABASE": self.db,
                "AFTER_STATE_DIR": str(self.state),
                "AFTER_PORT": str(self.port),
                "AFTER_BENCH_TICK_LOG": str(self.tick_log),
                "PYTHONPATH": os.pathsep.join(p for p in (str(BENCH), env.get("PYTHONPATH", "")) if p),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    @property
    def token(self) -> str:
        return (self.state / "token").read_text().strip()

    def spawn(self) -> None:
        """Start the process without waiting for it (W4 times from here)."""
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(BENCH / "daemon_probe.py"), "serve"],
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
            )
        _LIVE.add(self.proc)
        self.starts += 1

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode if self.proc else '?'}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                status, _ = http(self.base, "GET", "/", timeout=2)
                if status == 200 and (self.state / "token").exists():
                    self._start_profiler()
                    return
            time.sleep(0.05)
        raise RuntimeError(f"daemon did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def start(self) -> Daemon:
        self.spawn()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def api(self, method: str, path: str, body: Any = None, timeout: float = 120) -> tuple[int, Any]:
        return http(self.base, method, path, body, token=self.token, timeout=timeout)

    def start_worker(self, concurrency: int) -> dict[str, Any]:
        status, body = self.api("POST", f"/workers/{WORKER}", {"concurrency": concurrency, "jobs": ["benchjobs"]})
        if status != 201:
            raise RuntimeError(f"cannot start worker: {status} {body}")
        return dict(body)

    def wait_worker(self, timeout: float = 60.0) -> int | None:
        """Wait until the (restored) worker runs; return its pid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                _status, body = self.api("GET", "/workers", timeout=5)
                workers = body.get("workers", body) if isinstance(body, dict) else body
                for w in workers if isinstance(workers, list) else []:
                    if w.get("name") == WORKER and w.get("running"):
                        return int(w["pid"])
            time.sleep(0.05)
        return None

    def tasks_run(self) -> int:
        """Tasks the worker reported finished (after their final status write landed)."""
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            status, body = self.api("GET", f"/workers/{WORKER}", timeout=10)
            if status == 200:
                return int(body.get("tasks_run") or 0)
        return 0

    def worker_pid(self) -> int | None:
        status, body = self.api("GET", f"/workers/{WORKER}", timeout=10)
        return int(body["pid"]) if status == 200 and body.get("pid") else None

    def create(self, bodies: list[dict[str, Any]], per_request: int = 2_000) -> int:
        """Create tasks with ``POST /tasks`` arrays; returns how many.

        The API takes up to 10,000 tasks per request, but its default body limit
        (``server.max_body_bytes``, 1 MiB) stops a request of 10,000 of these tasks
        (about 150 bytes each) first: 2,000 per request stays well under it.
        """
        made = 0
        for i in range(0, len(bodies), per_request):
            status, reply = self.api("POST", "/tasks", bodies[i : i + per_request], timeout=300)
            if status != 201:
                raise RuntimeError(f"POST /tasks answered {status}: {str(reply)[:300]}")
            made += len(reply["ids"])
        return made

    def _start_profiler(self) -> None:
        if self.profile_dir is None or self._profiler is not None or self.proc is None:
            return
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            print("  (py-spy not found: no profile)", file=sys.stderr)
            self.profile_dir = None
            return
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        out = self.profile_dir / f"{self.label or 'daemon'}-{self.starts}.txt"
        self._profiler = subprocess.Popen(
            [spy, "record", "--pid", str(self.proc.pid), "--subprocesses", "--rate", "250", "--format", "raw", "--output", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _LIVE.add(self._profiler)

    def _stop_profiler(self) -> None:
        prof, self._profiler = self._profiler, None
        if prof is not None:
            end_process(prof, signal.SIGINT, 30)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (the daemon stops its workers in order); SIGKILL after ``timeout``."""
        self._stop_profiler()
        if self.proc is not None:
            end_process(self.proc, signal.SIGTERM, timeout)

    def ticks(self, since: float = 0.0, until: float = math.inf) -> list[tuple[float, float, int]]:
        """(wall time at end, duration s, fired) of each tick logged between ``since`` and ``until``."""
        out = []
        try:
            lines = self.tick_log.read_text().splitlines()
        except FileNotFoundError:
            return []
        for line in lines:
            parts = line.split()
            if len(parts) == 3 and since <= float(parts[0]) <= until:
                out.append((float(parts[0]), float(parts[1]), int(parts[2])))
        return out

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------------------------------------
# Workloads


@dataclass
class Ctx:
    """What every workload needs: the server, sizes, where to write, profiling."""

    couch: Couch
    sizes: Sizes
    workdir: Path
    profile_dir: Path | None = None
    keep_dbs: bool = False

    def pids(self, daemon: Daemon | None = None, worker: int | None = None) -> dict[str, int | None]:
        return {"daemon": daemon.pid if daemon else None, "worker": worker, "couchdb": self.couch.server_pid}


def _result(workload: str, metrics: dict[str, Any], notes: list[str], sizes: Sizes, **extra: Any) -> dict[str, Any]:
    return {
        "system": "after",
        "workload": workload,
        "quick": sizes.name != "full",
        "size": sizes.name,
        "metrics": metrics,
        "notes": "; ".join(notes) or "ok",
        **extra,
    }


@contextlib.contextmanager
def _database(ctx: Ctx, label: str) -> Iterator[str]:
    db = ctx.couch.new_db(label)
    try:
        yield db
    finally:
        if not ctx.keep_dbs:
            ctx.couch.drop_db(db)


def store_limit(ctx: Ctx) -> dict[str, Any]:
    """The server's own ceiling: _bulk_docs docs/s and single writes/s, same server, same run.

    Bulk is measured twice: into a database set up by After (its design document's
    ``validate_doc_update`` runs on every write, as it does for every task write) and
    into a plain database (the server alone). Each is written in four rounds; the median
    round is the figure, so one slow round (a LevelDB compaction) does not decide it.
    """
    sz = ctx.sizes
    factory = TaskFactory(ctx.workdir / "unused-records")
    plain = f"bench-plain-{uuid.uuid4().hex[:8]}"
    with _database(ctx, "store") as db:

        async def bulk_rounds(s: aiohttp.ClientSession, target: str) -> list[float]:
            await bulk_write(s, ctx.couch.url, target, [factory.doc(time.time() + 86400) for _ in range(100)])  # warm-up
            rates = []
            per_round = max(500, sz.bulk_docs // 4)
            for _ in range(4):
                docs = [factory.doc(time.time() + 86400) for _ in range(per_round)]
                t0 = time.perf_counter()
                written = 0
                for i in range(0, len(docs), 500):  # one request at a time, as After's BulkWriter
                    written += await bulk_write(s, ctx.couch.url, target, docs[i : i + 500])
                rates.append(written / (time.perf_counter() - t0))
            return rates

        async def measure() -> dict[str, Any]:
            out: dict[str, Any] = {}
            async with ctx.couch.session(timeout=120, limit=64) as s:
                async with s.put(f"{ctx.couch.url}/{plain}") as resp:
                    await resp.read()
                try:
                    after_rates = await bulk_rounds(s, db)
                    plain_rates = await bulk_rounds(s, plain)
                finally:
                    async with s.delete(f"{ctx.couch.url}/{plain}") as resp:
                        await resp.read()
                out["bulk_docs_per_s"] = round(percentile(after_rates, 50), 1)
                out["bulk_docs_per_s_rounds"] = [round(r) for r in after_rates]
                out["plain_bulk_docs_per_s"] = round(percentile(plain_rates, 50), 1)
                out["plain_bulk_docs_per_s_rounds"] = [round(r) for r in plain_rates]

                async def put(doc: dict[str, Any]) -> float:
                    t = time.perf_counter()
                    async with s.put(f"{ctx.couch.url}/{db}/{quote(doc['_id'], safe='')}", data=json.dumps(doc)) as resp:
                        await resp.read()
                        if resp.status >= 300:
                            raise RuntimeError(f"PUT answered {resp.status}")
                    return time.perf_counter() - t

                singles = [factory.doc(time.time() + 86400) for _ in range(sz.single_writes)]
                t0 = time.perf_counter()
                lat = [await put(d) for d in singles]
                out["single_writes_per_s"] = round(len(singles) / (time.perf_counter() - t0), 1)
                out["single_write_p50_ms"] = round(percentile(lat, 50) * 1000, 2)

                many = [factory.doc(time.time() + 86400) for _ in range(sz.single_writes * 4)]
                queue = list(reversed(many))

                async def client() -> None:
                    while queue:
                        await put(queue.pop())

                t0 = time.perf_counter()
                await asyncio.gather(*(client() for _ in range(32)))
                out["single_writes_32_per_s"] = round(len(many) / (time.perf_counter() - t0), 1)
                out["bulk_over_single"] = round(out["bulk_docs_per_s"] / out["single_writes_per_s"], 1)
                out["doc_bytes"] = len(json.dumps(factory.doc(time.time())))
            return out

        meter = CpuMeter({"couchdb": ctx.couch.server_pid}).start()
        metrics = asyncio.run(measure())
        cpu = meter.stop()
    notes = ["aiohttp client; task-shaped documents; _bulk_docs in batches of 500, one request at a time; median of 4 rounds"]
    return _result("store", metrics, notes, sz, cpu_s=cpu)


def w1(ctx: Ctx) -> dict[str, Any]:
    """Precision: n tasks due at the same whole second; lag = job start - due."""
    sz = ctx.sizes
    notes: list[str] = []
    records = ctx.workdir / "w1-records.txt"
    factory = TaskFactory(records)
    with _database(ctx, "w1") as db, Daemon(ctx.couch, db, ctx.workdir / "w1-state", profile_dir=ctx.profile_dir, label="W1") as d:
        d.start()
        d.start_worker(sz.concurrency)
        wpid = d.worker_pid()
        due = float(math.ceil(time.time() + sz.lead_s))
        t0 = time.monotonic()
        made = d.create([factory.body(due) for _ in range(sz.w1_n)])
        create_s = time.monotonic() - t0
        slack = due - time.time()
        if slack < sz.lead_s / 2:
            notes.append(f"creating ended only {slack:.2f} s before the due second")
        meter = CpuMeter(ctx.pids(d, wpid))
        wait_for(lambda: time.time() >= due - 0.5, time.monotonic() + 10)
        meter.start()
        finished = wait_for(lambda: count_lines(records) >= made, time.monotonic() + max(0.0, due - time.time()) + 60)
        cpu = meter.stop()
        if not finished:
            notes.append("run bound hit: 60 s after the due second")
        ticks = d.ticks(due - 1 - CLAIM_AHEAD, due + 30)
    recs = read_records(records)
    lags = [t - due for t, _, _ in recs]
    fired = [(dur, n) for _, dur, n in ticks if n]
    metrics: dict[str, Any] = {
        **summarize_ms(lags),
        "min_ms": round(min(lags) * 1000, 2) if lags else float("nan"),
        "n": sz.w1_n,
        "stored": made,
        "executed": len(recs),
        "create_s": round(create_s, 3),
        "slack_s": round(slack, 3),
        "ticks_that_fired": len(fired),
        "fire_tick_ms": [round(dur * 1000, 1) for dur, _ in fired[:20]],
        "concurrency": sz.concurrency,
    }
    return _result("W1", metrics, notes, sz, cpu_s=cpu)


#: Starts the worker that drains a workload (with the process stack to stop it, the
#: daemon, its concurrency and the CPU meter to add its processes to); returns how many
#: tasks it has finished, their final write landed. Default: a local worker (W2, W6).
WorkerStart = Callable[[contextlib.ExitStack, "Daemon", int, CpuMeter], Callable[[], int]]


def local_worker(stack: contextlib.ExitStack, d: Daemon, concurrency: int, meter: CpuMeter) -> Callable[[], int]:
    d.start_worker(concurrency)
    wpid = d.worker_pid()
    meter.add("worker", wpid)
    meter.add("job_processes", wpid, children=True)
    return d.tasks_run


def _drain(ctx: Ctx, name: str, n: int, job: str, concurrency: int, bound_s: float | None, worker: WorkerStart = local_worker) -> dict[str, Any]:
    """W2's measurement: ``n`` tasks all due, stored while no worker runs; done/s from the store.

    ``bound_s`` (W6): stop counting that long after the first job's start and report
    what was done by then, so a slow path reports a rate instead of hanging the run. Without
    it the run waits (bounded generously) until every task is done. ``worker`` starts
    what drains them (W7: a remote worker process).
    """
    notes: list[str] = []
    records = ctx.workdir / f"{name.lower()}-records.txt"
    factory = TaskFactory(records, job)
    label = name.lower()
    with (
        _database(ctx, label) as db,
        Daemon(ctx.couch, db, ctx.workdir / f"{label}-state", profile_dir=ctx.profile_dir, label=name) as d,
        contextlib.ExitStack() as workers,
    ):
        d.start()
        now = time.time()
        t0 = time.monotonic()
        made = d.create([factory.body(now) for _ in range(n)])
        store_s = time.monotonic() - t0
        # The daemon takes the new tasks in through its changes feed while no worker
        # runs (it holds them for the worker); wait until it is idle before starting.
        settle = wait_idle(d.pid, time.monotonic() + 30 + n / 1000)
        start = time.time()
        meter = CpuMeter(ctx.pids(d))
        meter.start()
        ran = worker(workers, d, concurrency, meter)
        if bound_s is None:
            finished = wait_for(lambda: count_lines(records) >= made, time.monotonic() + 60 + n / 100)
        else:
            # The bound counts from the first job's start: a worker slow to start on a
            # loaded machine must not leave a run with nothing done to report.
            wait_for(lambda: count_lines(records) >= 1, time.monotonic() + 120)
            finished = wait_for(lambda: count_lines(records) >= made, time.monotonic() + bound_s)
        # The worker reports a task finished after its final write landed.
        if finished:
            wait_for(lambda: ran() >= made, time.monotonic() + 30, interval=0.2)
        cut = time.time()
        cpu = meter.stop()
        if not finished and bound_s is not None:
            d.stop()  # no more writes while the documents are read
        docs = asyncio.run(all_tasks(ctx.couch, db, deadline=time.monotonic() + 120))
        if not finished and bound_s is not None:
            notes.append(f"bound hit: {bound_s:g} s after the first job's start; counted what was done by then")
        elif not finished:
            notes.append("run bound hit; throughput is over the tasks seen done")
        ticks = d.ticks(start, cut)
    done_docs = [x for x in docs if x.get("status") == "done" and x.get("finished")]
    until = math.inf if finished else cut  # cut short: what was done by the bound
    done_at = sorted(t for t in (timing.parse_date(x["finished"]).timestamp() for x in done_docs) if t <= until)
    # Writes per task while measured, from the documents themselves: a revision's
    # generation counts its writes; the first was the create, before the measurement.
    gens = [int(str(x.get("_rev", "1-")).split("-", 1)[0]) - 1 for x in done_docs]
    writes_per_task = round(sum(gens) / len(gens), 2) if gens else 3.0
    others = {x.get("status") for x in docs} - {"done"}
    if others and finished:
        notes.append(f"statuses besides done: {sorted(map(str, others))}")
    starts = sorted(t for t, _, _ in read_records(records) if t <= until)
    # From the first job's start to the last done: ``finished`` has millisecond
    # resolution, and a small batch of no-ops can all finish within one millisecond.
    span = done_at[-1] - starts[0] if done_at and starts else 0.0
    job_span = starts[-1] - starts[0] if len(starts) >= 2 else 0.0
    metrics: dict[str, Any] = {
        "tasks_per_s": round(len(done_at) / span, 1) if span > 0 else float("nan"),
        "job_starts_per_s": round((len(starts) - 1) / job_span, 1) if job_span > 0 else float("nan"),
        "first_done_s": round(done_at[0] - start, 3) if done_at else None,
        "last_done_s": round(done_at[-1] - start, 3) if done_at else None,
        "n": n,
        "stored": made,
        "executed": len(starts),
        "done": len(done_at),
        "store_s": round(store_s, 3),
        "settle_s": round(settle, 2),
        "measured_s": round(cut - start, 2),  # from the worker's start
        "jobs_measured_s": round(cut - starts[0], 2) if starts else None,  # from the first job's start
        "bound_s": bound_s,
        "ticks": len(ticks),
        "ticks_that_fired": sum(1 for t in ticks if t[2]),
        "tick_p50_ms": round(percentile([t[1] for t in ticks], 50) * 1000, 2) if ticks else None,
        "writes_per_task": writes_per_task,
        "concurrency": concurrency,
        "job": job,
    }
    notes.append("writes per task while measured: from the done documents' revisions, less the create")
    return _result(name, metrics, notes, ctx.sizes, cpu_s=cpu)


def w2(ctx: Ctx) -> dict[str, Any]:
    """Throughput: n tasks all due, stored while no worker runs; done/s from the store."""
    return _drain(ctx, "W2", ctx.sizes.w2_n, JOB, ctx.sizes.concurrency, None)


def w6_concurrency(sizes: Sizes) -> tuple[int, str]:
    """W6's worker concurrency: W2's once job processes come from a warm pool, else 8.

    Without a pool every run of an isolated job starts an interpreter, and every slot
    busy with one is a process: W2's 1,000 slots would start 1,000 interpreters at once
    (about 30 MB each). 8 is what issue 14 measured (7.7 tasks/s). The pool's settings
    (``workers.pool_size``) bound the processes, so W2's slots are safe with it.
    """
    if hasattr(Settings(), "workers_pool_size"):
        return sizes.concurrency, "job processes from the worker's pool (workers.pool_size)"
    return min(8, sizes.concurrency), "no job process pool in this tree: an interpreter a run, so at most 8 at once"


def w6(ctx: Ctx) -> dict[str, Any]:
    """W2 with a user's plain ``@job()`` function at the default isolation (job processes).

    Bounded by ``w6_deadline_s``: a run that starts an interpreter per task (~8 tasks/s)
    reports ``done/n in bound`` and its rate instead of taking 40 minutes at full size.
    """
    sz = ctx.sizes
    concurrency, why = w6_concurrency(sz)
    res = _drain(ctx, "W6", sz.w6_n, PLAIN_JOB, concurrency, sz.w6_deadline_s)
    res["notes"] = f"{why}; {res['notes']}"
    return res


def w7(ctx: Ctx) -> dict[str, Any]:
    """W2 drained by a remote worker (``after.client``) at concurrency 100: bench/remote_side.py."""
    from bench import remote_side

    return remote_side.w7(ctx)


def w8(ctx: Ctx) -> dict[str, Any]:
    """A chain of tasks linked by dependencies, run in order: the hand-off cost (bench/chain.py)."""
    from bench import chain

    return chain.w8(ctx)


def wait_idle(pid: int | None, deadline: float, *, window: float = 0.5, below: float = 0.05) -> float:
    """Wait until ``pid`` uses under ``below`` of a CPU over ``window`` s; return seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        a = cpu_seconds(pid)
        time.sleep(window)
        b = cpu_seconds(pid)
        if a is None or b is None or (b - a) / window < below:
            break
    return time.monotonic() - t0


def _w3_one(ctx: Ctx, stored: int, label: str) -> dict[str, Any]:
    """One W3 run: ``stored`` future tasks, then ``rate`` due per second for ``seconds``."""
    sz = ctx.sizes
    records = ctx.workdir / f"w3-{label}-records.txt"
    factory = TaskFactory(records)
    out: dict[str, Any] = {"stored": stored}
    with _database(ctx, f"w3{label}") as db:
        base = time.time() + 2 * 86400
        spread = 28 * 86400

        def future() -> Iterator[dict[str, Any]]:
            for i in range(stored):
                yield factory.doc(base + spread * i / max(1, stored))

        t0 = time.monotonic()
        written = asyncio.run(bulk_load(ctx.couch, db, future(), batch=1000, deadline=time.monotonic() + 1800))
        out["load_s"] = round(time.monotonic() - t0, 1)
        out["load_docs_per_s"] = round(written / max(1e-9, time.monotonic() - t0), 1)
        out["loaded"] = written
        # The daemon's first agenda query would otherwise build the index over every
        # stored task (a minute per million here) inside its start-up.
        out["agenda_view_build_s"] = round(asyncio.run(warm_view(ctx.couch, db, "agenda", timeout=1800)), 1)
        with Daemon(ctx.couch, db, ctx.workdir / f"w3-{label}-state", profile_dir=ctx.profile_dir, label=f"W3-{label}") as d:
            d.start()
            d.start_worker(sz.concurrency)
            wpid = d.worker_pid()
            first = float(math.ceil(time.time() + sz.lead_s + 1.0))
            bodies = [factory.body(first + s) for s in range(sz.w3_seconds) for _ in range(sz.w3_rate)]
            d.create(bodies)
            rss: list[float] = []
            server_rss: list[float] = []
            wait_for(lambda: time.time() >= first - 0.5, time.monotonic() + 30)
            meter = CpuMeter(ctx.pids(d, wpid)).start()
            end = first + sz.w3_seconds
            while time.time() < end + 1:
                rss.append(rss_mb(d.pid) or 0.0)
                server_rss.append(rss_mb(ctx.couch.server_pid) or 0.0)
                time.sleep(0.5)
            cpu = meter.stop()
            wait_for(lambda: count_lines(records) >= len(bodies), time.monotonic() + 30)
            # Tasks are claimed up to scheduler.claim_ahead seconds before they are due.
            ticks = d.ticks(first - 0.5 - CLAIM_AHEAD, end + 0.5)
    durs = [t[1] for t in ticks]
    fired = [t[1] for t in ticks if t[2]]
    recs = read_records(records)
    lags = [t - due for t, due, _ in recs]
    out.update(
        {
            "ticks": len(durs),
            "tick_p50_ms": round(percentile(durs, 50) * 1000, 3) if durs else float("nan"),
            "tick_p99_ms": round(percentile(durs, 99) * 1000, 3) if durs else float("nan"),
            "tick_max_ms": round(max(durs) * 1000, 3) if durs else float("nan"),
            "firing_ticks": len(fired),
            "firing_tick_p50_ms": round(percentile(fired, 50) * 1000, 3) if fired else float("nan"),
            "firing_tick_p99_ms": round(percentile(fired, 99) * 1000, 3) if fired else float("nan"),
            "rss_mb_max": round(max(rss), 1) if rss else None,
            "rss_mb_mean": round(sum(rss) / len(rss), 1) if rss else None,
            "server_rss_mb_max": round(max(server_rss), 1) if any(server_rss) else None,
            "due_created": len(bodies),
            "executed": len(recs),
            "lag_p50_ms": round(percentile(lags, 50) * 1000, 2) if lags else None,
            "lag_p99_ms": round(percentile(lags, 99) * 1000, 2) if lags else None,
            "cpu_s": cpu,
        }
    )
    return out


def w3(ctx: Ctx) -> dict[str, Any]:
    """Scale: the tick's cost and the daemon's memory with a big store vs a small one."""
    sz = ctx.sizes
    notes = [f"{sz.w3_rate} due/s for {sz.w3_seconds} s; stored {sz.w3_big:,} vs {sz.w3_small:,}"]
    if sz.name != "full":
        notes.append(f"scaled down ({sz.name}): the issue's W3 is 1,000,000 vs 10,000 for 60 s")
    small = _w3_one(ctx, sz.w3_small, "small")
    big = _w3_one(ctx, sz.w3_big, "big")

    def ratio(key: str) -> float:
        a, b = small.get(key), big.get(key)
        return round(b / a, 3) if a and b and not math.isnan(a) and not math.isnan(b) else float("nan")

    metrics = {
        "ratio_p50": ratio("tick_p50_ms"),
        "ratio_p99": ratio("tick_p99_ms"),
        "firing_ratio_p50": ratio("firing_tick_p50_ms"),
        "firing_ratio_p99": ratio("firing_tick_p99_ms"),
        "rss_mb": big.get("rss_mb_max"),
        "small": small,
        "big": big,
    }
    return _result("W3", metrics, notes, sz)


def w4(ctx: Ctx) -> dict[str, Any]:
    """Catch-up: tasks fall due while the daemon is down; start it; drain time and order."""
    sz = ctx.sizes
    notes: list[str] = []
    records = ctx.workdir / "w4-records.txt"
    factory = TaskFactory(records)
    with _database(ctx, "w4") as db, Daemon(ctx.couch, db, ctx.workdir / "w4-state", profile_dir=ctx.profile_dir, label="W4") as d:
        d.start()
        d.start_worker(sz.concurrency)  # saved in workers.json: the next start restores it
        d.stop()
        dues = w4_due_times(sz.w4_n, sz.w4_span_s, end_ts=time.time())
        t0 = time.monotonic()
        docs = iter([factory.doc(x) for x in dues])
        stored = asyncio.run(bulk_load(ctx.couch, db, docs, batch=500, in_flight=1, deadline=time.monotonic() + 300))
        store_s = time.monotonic() - t0
        start = time.time()
        d.spawn()
        meter = CpuMeter({"couchdb": ctx.couch.server_pid}).start()
        d.wait_ready()
        ready = time.time() - start
        meter.add("daemon", d.pid)
        meter.add("worker", d.wait_worker())
        finished = wait_for(lambda: count_lines(records) >= stored, time.monotonic() + 120 + sz.w4_n / 50)
        cpu = meter.stop()
        if not finished:
            notes.append("run bound hit")
    recs = read_records(records)
    executed = len(recs)
    metrics: dict[str, Any] = {
        "drain_s": round(recs[-1][0] - start, 3) if recs else float("nan"),
        "in_order_fraction": round(in_order_fraction([due for _, due, _ in recs]), 4),
        "first_execution_s": round(recs[0][0] - start, 3) if recs else None,
        "ready_s": round(ready, 3),
        "drain_after_ready_s": round(recs[-1][0] - start - ready, 3) if recs else None,
        "n": sz.w4_n,
        "span_s": sz.w4_span_s,
        "stored": stored,
        "executed": executed,
        "distinct_executed": len({r[2] for r in recs}),
        "store_s": round(store_s, 3),
        "insert_order": f"shuffled(seed={W4_SEED})",
        "concurrency": sz.concurrency,
    }
    notes.append("drain counted from the daemon's spawn (process start, CouchDB setup, worker restore included)")
    return _result("W4", metrics, notes, sz, cpu_s=cpu)


def w5(ctx: Ctx) -> dict[str, Any]:
    """API: concurrent clients POST one task each, as fast as answers come, for a while."""
    sz = ctx.sizes
    notes: list[str] = []
    factory = TaskFactory(ctx.workdir / "w5-unused")
    with _database(ctx, "w5") as db, Daemon(ctx.couch, db, ctx.workdir / "w5-state", profile_dir=ctx.profile_dir, label="W5") as d:
        d.start()
        token = d.token
        meter = CpuMeter(ctx.pids(d))

        async def load() -> tuple[list[float], int, float]:
            lat: list[float] = []
            errors = 0
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            body = json.dumps(factory.body(time.time() + 86400)).encode()
            conn = aiohttp.TCPConnector(limit=sz.w5_clients)
            async with aiohttp.ClientSession(headers=headers, connector=conn, timeout=aiohttp.ClientTimeout(total=30)) as s:
                # Warm-up: connections open, first requests' costs paid.
                for _ in range(5):
                    async with s.post(d.base + "/tasks", data=body) as r:
                        await r.read()
                meter.start()
                t_end = time.monotonic() + sz.w5_seconds

                async def client() -> None:
                    nonlocal errors
                    while time.monotonic() < t_end:
                        t = time.perf_counter()
                        try:
                            async with s.post(d.base + "/tasks", data=body) as r:
                                await r.read()
                                ok = r.status == 201
                        except (aiohttp.ClientError, TimeoutError):
                            ok = False
                        if ok:
                            lat.append(time.perf_counter() - t)
                        else:
                            errors += 1

                t0 = time.monotonic()
                await asyncio.gather(*(client() for _ in range(sz.w5_clients)))
                return lat, errors, time.monotonic() - t0

        lat, errors, elapsed = asyncio.run(load())
        cpu = meter.stop()
    if errors:
        notes.append(f"{errors} requests failed")
    metrics = {
        "creates_per_s": round(len(lat) / elapsed, 1) if elapsed > 0 else float("nan"),
        **summarize_ms(lat),
        "created": len(lat),
        "errors": errors,
        "clients": sz.w5_clients,
        "seconds": round(elapsed, 2),
    }
    notes.append("one task per request; the load generator runs in the bench process (aiohttp)")
    return _result("W5", metrics, notes, sz, cpu_s=cpu)


WORKLOADS: dict[str, Callable[[Ctx], dict[str, Any]]] = {
    "store": store_limit,
    "W1": w1,
    "W2": w2,
    "W3": w3,
    "W4": w4,
    "W5": w5,
    "W6": w6,
    "W7": w7,
    "W8": w8,
}


def run(name: str, ctx: Ctx) -> dict[str, Any]:
    """Run one of After's workloads; a failure becomes a result with a note, not a crash."""
    t0 = time.monotonic()
    restarted = ctx.couch.ensure_alive()
    try:
        res = WORKLOADS[name](ctx)
    except Exception as exc:  # the table must still be printed for the others
        res = _result(name, {}, [f"failed: {type(exc).__name__}: {str(exc)[:500]}"], ctx.sizes)
    if restarted:
        before = res.get("notes")
        res["notes"] = restarted if before in (None, "", "ok") else f"{before}; {restarted}"
    res["elapsed_s"] = round(time.monotonic() - t0, 1)
    res["sizes"] = asdict(ctx.sizes)
    res["server"] = ctx.couch.kind
    if ctx.profile_dir is not None:  # the daemons' profiles are named after their workload
        res["profiles"] = sorted(str(p) for p in ctx.profile_dir.glob(f"{name}-*.txt"))
    return res
