"""The warm job processes (after/jobpool.py, after/jobprocess.py): many jobs per process, and a crash, a
timeout, an ``os._exit``, a memory leak or a process's quota costs only that process.

Real processes throughout: the pool is driven directly (it touches no store) with the
jobs of tests/jobs/pooljobs.py, and once through a real daemon and worker."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import TESTS, Daemon, wait_until

from after import config
from after.errors import ConfigError
from after.jobpool import GROW_AFTER, JobPool, should_grow
from after.jobprocess import IsolatedJobError, JobCrashed, JobOverMemory, Limits, retire_reason


@pytest.mark.parametrize(
    ("limits", "runs", "rss", "expected"),
    [
        (Limits(size=1), 10**6, 10**5, None),  # no limits: kept for good
        (Limits(size=1, max_tasks=3), 2, 30.0, None),
        (Limits(size=1, max_tasks=3), 3, 30.0, "ran 3 jobs (workers.max_tasks_per_process)"),
        (Limits(size=1, max_memory_mb=100), 1, 100.0, None),  # at the ceiling is not past it
        (Limits(size=1, max_memory_mb=100), 1, 100.5, "uses 100 MB, over workers.max_memory_mb = 100"),
        (Limits(size=1, max_memory_mb=100), 1, None, None),  # memory unknown (no /proc): kept
        (Limits(size=1, max_tasks=1, max_memory_mb=100), 1, 500.0, "ran 1 jobs (workers.max_tasks_per_process)"),
    ],
)
def test_when_a_process_retires(limits: Limits, runs: int, rss: float | None, expected: str | None) -> None:
    assert retire_reason(limits, runs=runs, rss_mb=rss) == expected


@pytest.mark.parametrize(
    ("alive", "idle", "spawning", "quiet", "expected"),
    [
        (0, 0, 0, 0.0, True),  # no process at all: start one at once
        (1, 1, 0, 9.0, False),  # an idle one: take it
        (2, 0, 1, 9.0, False),  # one is starting: one at a time
        (4, 0, 0, 9.0, False),  # at the pool's size (4)
        (2, 0, 0, GROW_AFTER / 2, False),  # busy ones keep coming free: short jobs, wait
        (2, 0, 0, GROW_AFTER, True),  # none came free for GROW_AFTER: they stay busy, grow
    ],
)
def test_when_the_pool_grows(alive: int, idle: int, spawning: int, quiet: float, expected: bool) -> None:
    assert should_grow(Limits(size=4), alive=alive, idle=idle, spawning=spawning, quiet=quiet) is expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AFTER_WORKERS_POOL_SIZE": "-1"}, "workers.pool_size must be 0 (the worker's concurrency) .. 1000, got -1"),
        ({"AFTER_WORKERS_POOL_SIZE": "many"}, "workers.pool_size: expected int, got 'many'"),
        ({"AFTER_WORKERS_MAX_TASKS_PER_PROCESS": "-5"}, "workers.max_tasks_per_process must be >= 0 (0: no limit), got -5"),
        ({"AFTER_WORKERS_MAX_MEMORY_MB": "-1"}, "workers.max_memory_mb must be >= 0 (0: no ceiling), got -1"),
    ],
)
def test_pool_settings_that_make_no_sense_are_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load("/dev/null", env=env)
    assert info.value.message == message


@pytest.fixture
async def make_pool(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Callable[..., JobPool]]:
    """Pools whose processes import tests/jobs/pooljobs.py; all closed after the test."""
    monkeypatch.setenv("PYTHONPATH", str(TESTS / "jobs") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    pools: list[JobPool] = []

    def make(*, modules: list[str] | None = None, idle_seconds: float = 60.0, **limits: Any) -> JobPool:
        init = {"modules": ["pooljobs"] if modules is None else modules, "config_jobs": {}}
        pool = JobPool(Limits(**{"size": 1, **limits}), init, name="t", idle_seconds=idle_seconds)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        await pool.close()


async def run(pool: JobPool, name: str, *args: Any, messages: list[dict[str, Any]] | None = None, **kwargs: Any) -> Any:
    job = {"name": name, "arguments": list(args), "kwargs": kwargs}
    request = {"job": job, "task": {"_id": f"task:{name}"}, "worker": "t", "settings": {}, "log_limit": 50}
    return await pool.run(f"task:{name}", request, (messages if messages is not None else []).append)


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


async def wait_for_file(path: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path} was never written"
        await asyncio.sleep(0.02)
    return path.read_text()


async def test_one_process_runs_many_jobs_sync_and_async(make_pool: Callable[..., JobPool]) -> None:
    pool = make_pool()
    pids = [await run(pool, "pid") for _ in range(5)] + [await run(pool, "pid_async")]
    assert len(set(pids)) == 1 and pids[0] != os.getpid()
    assert pool.started == 1


async def test_a_process_is_replaced_after_max_tasks(make_pool: Callable[..., JobPool]) -> None:
    pool = make_pool(max_tasks=2)
    pids = [await run(pool, "pid") for _ in range(5)]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    await asyncio.to_thread(wait_until, lambda: gone(pids[0]), 10, "the retired process to exit")


async def test_os_exit_costs_only_its_own_process(make_pool: Callable[..., JobPool], tmp_path: Path) -> None:
    pool = make_pool(size=2)
    sibling = asyncio.ensure_future(run(pool, "nap", 1.0, str(tmp_path / "nap")))
    sibling_pid = int(await wait_for_file(tmp_path / "nap"))
    with pytest.raises(JobCrashed, match="exited with 17 before it answered"):
        await run(pool, "exit_now", 17)
    assert await sibling == sibling_pid  # the other job, in the other process, went on
    assert isinstance(await run(pool, "pid"), int)  # and the pool still runs jobs
    assert pool.stats()["alive"] <= 2


async def test_a_job_past_its_timeout_is_killed_with_its_process(make_pool: Callable[..., JobPool], tmp_path: Path) -> None:
    pool = make_pool()
    marker = tmp_path / "pid"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.0):
            await run(pool, "nap", 3600, str(marker))
    pid = int(marker.read_text())
    await asyncio.to_thread(wait_until, lambda: gone(pid), 10, "the timed-out job's process to be gone")
    assert await run(pool, "pid") != pid


async def test_a_job_growing_past_the_memory_ceiling_is_killed(make_pool: Callable[..., JobPool], tmp_path: Path) -> None:
    pool = make_pool(max_memory_mb=150)
    marker = tmp_path / "pid"
    with pytest.raises(JobOverMemory, match=r"used \d+ MB, over workers.max_memory_mb = 150: killed"):
        async with asyncio.timeout(60):
            await run(pool, "grow", 300, str(marker))
    pid = int(marker.read_text())
    await asyncio.to_thread(wait_until, lambda: gone(pid), 10, "the grown process to be gone")
    assert await run(pool, "pid") != pid


async def test_a_process_that_leaked_is_replaced_after_its_run(make_pool: Callable[..., JobPool]) -> None:
    pool = make_pool(max_memory_mb=150)
    leaked = await run(pool, "leak", 200)  # the run itself is fine
    assert await run(pool, "pid") != leaked
    first, second = await run(pool, "pid"), await run(pool, "pid")
    assert first == second  # a process within the ceiling is kept


async def test_a_process_dead_between_jobs_costs_no_task(make_pool: Callable[..., JobPool]) -> None:
    pool = make_pool()
    pid = await run(pool, "pid")
    os.kill(pid, signal.SIGKILL)
    await asyncio.to_thread(wait_until, lambda: gone(pid), 10, "the idle process to die")
    assert await run(pool, "pid") != pid


async def test_progress_and_log_lines_reach_the_worker(make_pool: Callable[..., JobPool]) -> None:
    messages: list[dict[str, Any]] = []
    assert await run(make_pool(), "chat", messages=messages, steps=2) == {"steps": 2}
    assert messages == [
        {"log": "step 1 of 2"},
        {"progress": {"done": 1, "total": 2}},
        {"log": "step 2 of 2"},
        {"progress": {"done": 2, "total": 2}},
    ]


async def test_a_job_module_that_cannot_load_fails_each_run_not_the_pool(make_pool: Callable[..., JobPool]) -> None:
    pool = make_pool(modules=["no_such_module_for_after"])
    for _ in range(2):
        with pytest.raises(IsolatedJobError, match="no_such_module_for_after"):
            await run(pool, "pid")
    assert pool.started == 1


async def test_jobs_beyond_the_pool_size_wait_for_a_process(make_pool: Callable[..., JobPool], tmp_path: Path) -> None:
    pool = make_pool(size=2)
    # The first two can only return together (in two processes); the other four wait for them.
    pids = await asyncio.gather(*(run(pool, "meet", str(tmp_path / "meet"), 2) for _ in range(6)))
    assert len(set(pids)) == 2 and pool.started == 2


async def test_a_burst_of_short_jobs_needs_few_processes_and_sleepy_jobs_grow_the_pool(make_pool: Callable[..., JobPool], tmp_path: Path) -> None:
    pool = make_pool(size=50)
    await asyncio.gather(*(run(pool, "pid") for _ in range(300)))
    # Processes keep coming free: no process a job (each costs ~0.1 s of CPU to start).
    assert pool.started <= 20, pool.stats()
    # Jobs that stay busy (each waits for the other three) get a process each, up to the size.
    sleepy = make_pool(size=4)
    pids = await asyncio.gather(*(run(sleepy, "meet", str(tmp_path / "meet"), 4) for _ in range(4)))
    assert len(set(pids)) == 4 and sleepy.started == 4


async def test_idle_processes_are_ended_all_but_one(make_pool: Callable[..., JobPool], tmp_path: Path) -> None:
    pool = make_pool(size=3, idle_seconds=0.5)
    pids = set(await asyncio.gather(*(run(pool, "meet", str(tmp_path / "meet"), 3) for _ in range(3))))
    assert len(pids) == 3
    await asyncio.to_thread(wait_until, lambda: sum(not gone(p) for p in pids) == 1, 30, "all but one idle process to end")
    assert pool.stats()["alive"] == 1
    assert await run(pool, "pid") in pids  # the one kept is warm


async def test_closing_the_pool_ends_its_processes(make_pool: Callable[..., JobPool]) -> None:
    pool = make_pool(size=2)
    pids = set(await asyncio.gather(run(pool, "nap", 0.2), run(pool, "nap", 0.2)))
    await pool.close()
    assert all(gone(p) for p in pids)


def test_a_worker_runs_its_plain_functions_in_warm_processes(start_daemon: Callable[..., Daemon]) -> None:
    d = start_daemon("d1", AFTER_WORKERS_MAX_TASKS_PER_PROCESS="3")
    d.start_worker("w", concurrency=1, jobs=["pooljobs"])
    pids = []
    for _ in range(4):
        doc = d.wait_status(d.create({"worker": "w", "date": time.time(), "job": "pid"})["id"], "done", timeout=30)
        pids.append(doc["result"])
    # One process for three runs (workers.max_tasks_per_process = 3), then its replacement.
    assert pids[0] == pids[1] == pids[2] != pids[3]
    # The replaced one is gone and its replacement is warm: one job process (concurrency 1).
    wait_until(lambda: d.api("GET", "/workers/w")[1]["job_processes"] == 1 and not Path(f"/proc/{pids[2]}").exists(), 20, "one job process left")
    assert 'after_worker_job_processes{worker="w"} 1.0' in d.api("GET", "/metrics")[1]
    doc = d.wait_status(d.create({"worker": "w", "date": time.time(), "job": {"name": "chat", "kwargs": {"steps": 2}}})["id"], "done", timeout=30)
    assert doc["log"] == ["step 1 of 2", "step 2 of 2"] and doc["progress"] == {"done": 2, "total": 2}
