"""Job subprocesses that cannot outlive their worker.

A job that starts processes (the ``shell`` built-in, the warm job processes of
:mod:`after.jobpool` that isolated jobs run in) must not leave them running when its worker dies: a ``kill -9``
of the worker used to leave ``sh -c "sleep 20"`` running under init, and with a retry
policy a second copy of the job started while the first still ran. Two measures,
because neither is enough alone:

- every job subprocess gets ``PR_SET_PDEATHSIG(SIGKILL)`` (Linux): the kernel kills
  it the moment the worker's thread that started it is gone, whatever killed it. It
  reaches the direct child only, not ``sleep`` under ``sh``;
- every job subprocess leads a process group of its own (``start_new_session``), and
  the worker tells the daemon each group it started and ended (:func:`set_listener`,
  the ``job_group`` messages of :mod:`after.worker`): a ``shell`` job's group for the
  run, with its task; a warm job process's (:mod:`after.jobpool`) for the process's
  life, without a task. When the worker dies, the supervisor kills (SIGKILL) every group
  it still had, grandchildren included, before its tasks are handed back for a retry.

Elsewhere than Linux the death signal is a no-op and only the groups remain.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

log = logging.getLogger("after.procgroup")

#: From <linux/prctl.h>.
PR_SET_PDEATHSIG = 1

#: Called with ("start" | "end", task id, process group id) for every job group.
Listener = Callable[[str, str, int], None]

_listener: Listener | None = None


def _load_prctl() -> Any:
    """libc's ``prctl``, resolved once here: after a fork only the call itself may run."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """The ``preexec_fn`` that sets the death signal, or None where there is none.

    If the parent died between the fork and the ``prctl`` (the signal is then never
    sent), the child sees a different parent and ends itself at once.
    """
    if _prctl is None:
        return None
    prctl = _prctl

    def setup() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(137)

    return setup


def spawn_options() -> dict[str, Any]:
    """Keyword arguments for ``asyncio.create_subprocess_exec`` / ``subprocess.Popen`` of a
    job subprocess: its own process group, killed with its parent (see the module)."""
    options: dict[str, Any] = {"start_new_session": True}
    setup = _die_with_parent(os.getpid())
    if setup is not None:
        options["preexec_fn"] = setup
    return options


def set_listener(listener: Listener | None) -> None:
    """Who hears of job groups (the worker, which tells the daemon); None: nobody."""
    global _listener
    _listener = listener


def _tell(event: str, task_id: str, pgid: int) -> None:
    listener = _listener
    if listener is None:
        return
    try:
        listener(event, task_id, pgid)
    except Exception:  # a report that failed must not fail the job
        log.exception("task %s: cannot report job process group %d (%s)", task_id, pgid, event)


def started(task_id: str, pgid: int) -> None:
    """Report that task ``task_id``'s job runs a process group ``pgid`` (its leader's pid)."""
    _tell("start", task_id, pgid)


def ended(task_id: str, pgid: int) -> None:
    """Report that group ``pgid`` of task ``task_id`` is over (killed, or its leader exited)."""
    _tell("end", task_id, pgid)


@contextlib.contextmanager
def tracked(task_id: str, pgid: int) -> Iterator[None]:
    """Report the group ``pgid`` of task ``task_id``'s job as running for the block's life."""
    started(task_id, pgid)
    try:
        yield
    finally:
        ended(task_id, pgid)


def live(pgids: Iterable[int]) -> set[int]:
    """Those of the process groups ``pgids`` that have a live process (zombies, dead but
    not reaped, do not count), in one pass over ``/proc``.

    Reads ``/proc`` where there is one: an orphan stays a zombie for good under an init
    that does not reap (some containers), and ``killpg(pgid, 0)`` counts zombies.
    """
    wanted = set(pgids)
    if not wanted:
        return set()
    if not os.path.isdir("/proc"):
        return {g for g in wanted if _signalable(g)}
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and fields[0] != b"Z" and int(fields[2]) in wanted:
            found.add(int(fields[2]))
    return found


def alive(pgid: int) -> bool:
    """Whether process group ``pgid`` has a live process (see :func:`live`)."""
    return bool(live([pgid]))


def _signalable(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_groups(pgids: Iterable[int]) -> list[int]:
    """SIGKILL every process group in ``pgids`` (never this process's own); the groups signalled."""
    groups = sorted({g for g in pgids if g > 1 and g != os.getpgrp()})
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    return groups


async def wait_gone(pgids: Iterable[int], timeout: float = 2.0) -> list[int]:
    """Wait up to ``timeout`` s for the groups to have no live process; those still alive.

    SIGKILL is delivered asynchronously: a task handed back for a retry the instant the
    signal is sent could start again beside a copy not yet dead.
    """
    deadline = time.monotonic() + timeout
    left = live(pgids)
    while left and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        left = live(left)
    return sorted(left)
