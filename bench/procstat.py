"""CPU seconds and memory of the benchmark's processes, from /proc (Linux).

Why a module of its own: every workload reports the CPU each process used during its
measured phase (the first answer to "where does the time go"), and W6 the CPU of a
worker's job processes, which come and go (or live in a pool) and so need their
parent's accounting as well as their own.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int | str) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (field 3, ``state``, is [0])."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of ``pid`` so far (None if it is gone)."""
    fields = _stat_fields(pid) if pid else None
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_cpu_seconds(pid: int | None) -> float | None:
    """CPU seconds of ``pid``'s descendants: those reaped (its cutime + cstime) plus the live ones.

    Why both: a job process that ran and exited is only in its parent's ``cutime`` and
    ``cstime``; a long-lived one (a warm pool's) is only in its own ``utime`` and
    ``stime`` until it exits. The difference of two such readings is the descendants'
    CPU between them, whichever way they went: a child alive at the first reading and
    reaped before the second moves its whole total from one term to the other. The
    whole tree, not only children: a pool may start its processes from a server
    process of its own (multiprocessing's forkserver).
    """
    own = _stat_fields(pid) if pid else None
    if own is None:
        return None
    parent: dict[str, str] = {}
    total: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        f = _stat_fields(entry.name) if entry.name.isdigit() else None
        if f is not None:
            parent[entry.name] = f[1]
            total[entry.name] = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    ticks = int(own[13]) + int(own[14])
    frontier = [str(pid)]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier]
        ticks += sum(total[k] for k in kids)
        frontier = kids
    return ticks / CLK_TCK


def rss_mb(pid: int | None) -> float | None:
    """Resident set size (VmRSS) of ``pid`` in MiB, from /proc/<pid>/status."""
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


class CpuMeter:
    """CPU seconds used by named processes between :meth:`start` and :meth:`stop`.

    A name added with ``children=True`` counts the children of the process instead of
    the process itself (:func:`children_cpu_seconds`): the job processes of a worker.
    """

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = {k: v for k, v in pids.items() if v}
        self._children: set[str] = set()
        self._t0: dict[str, float | None] = {}
        self._wall0 = 0.0
        self.result: dict[str, float] = {}

    def _read(self, name: str, pid: int) -> float | None:
        return children_cpu_seconds(pid) if name in self._children else cpu_seconds(pid)

    def start(self) -> CpuMeter:
        self._wall0 = time.monotonic()
        self._t0 = {k: self._read(k, p) for k, p in self.pids.items()}
        return self

    def add(self, name: str, pid: int | None, *, children: bool = False) -> None:
        """Count a process that appeared after :meth:`start` from now on."""
        if pid:
            self.pids[name] = pid
            if children:
                self._children.add(name)
            self._t0[name] = self._read(name, pid)

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self._wall0
        out: dict[str, float] = {"wall_s": round(wall, 3)}
        for k, p in self.pids.items():
            a, b = self._t0.get(k), self._read(k, p)
            if a is not None and b is not None:
                out[k] = round(b - a, 2)
        self.result = out
        return out
