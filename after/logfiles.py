"""Worker log files: written by the daemon only, rotated by size, followed across rotation.

The daemon reads each worker's stdout/stderr from a pipe and appends it here, so it is
the single writer: it can rotate (``NAME.log`` -> ``NAME.log.1`` ...) and truncate
(``after clean``) safely while the worker runs. A follower (``after log -f``) of a live
log subscribes to the writes themselves, so no line is missed however fast the file
rotates; a log nobody writes any more is followed by polling the file.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

#: The log files being written by this process, by path: followers subscribe to them.
_LIVE: dict[Path, LogFile] = {}
FOLLOW_QUEUE = 10_000


class LogFile:
    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "ab")  # noqa: SIM115 - kept open for the worker's life
        self.listeners: set[asyncio.Queue[bytes | None]] = set()
        _LIVE[path] = self

    def write(self, data: bytes) -> None:
        self._f.write(data)
        self._f.flush()
        for q in list(self.listeners):
            try:
                q.put_nowait(data)
            except asyncio.QueueFull:
                # A follower that cannot keep up is dropped (its stream ends) rather than
                # buffered without limit.
                self.listeners.discard(q)
        if self.max_bytes and self._f.tell() >= self.max_bytes:
            self.rotate()

    def rotate(self) -> None:
        self._f.close()
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._f = open(self.path, "ab")  # noqa: SIM115

    def truncate(self) -> None:
        self._f.truncate(0)
        self._f.seek(0)

    def close(self) -> None:
        self._f.close()
        for q in list(self.listeners):
            if not q.full():
                q.put_nowait(None)  # end of this writer: followers go on by polling
        self.listeners.clear()
        if _LIVE.get(self.path) is self:
            del _LIVE[self.path]


def tail(path: Path, lines: int) -> bytes:
    """The last ``lines`` lines of a file (b"" when it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            block = 8192
            data = b""
            pos = size
            while pos > 0 and data.count(b"\n") <= lines:
                step = min(block, pos)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
            return b"\n".join(data.split(b"\n")[-lines - 1 :]) if data else b""
    except FileNotFoundError:
        return b""


async def follow(path: Path, *, start_lines: int = 50, poll: float = 0.25) -> AsyncIterator[bytes]:
    """Yield the last lines, then new data for ever, across rotation and truncation."""
    live = _LIVE.get(path)
    if live is not None:
        q: asyncio.Queue[bytes | None] = asyncio.Queue(FOLLOW_QUEUE)
        # Subscribe and read the tail with no await in between: nothing written can
        # fall between the two, or appear in both.
        live.listeners.add(q)
        first = tail(path, start_lines)
        try:
            yield first
            while (chunk := await q.get()) is not None:
                yield chunk
        finally:
            live.listeners.discard(q)
        start_lines = 0  # the writer stopped (worker stopped): go on by polling the file
    else:
        yield tail(path, start_lines)
    async for chunk in _poll(path, poll):
        yield chunk


async def _poll(path: Path, poll: float) -> AsyncIterator[bytes]:
    f = None
    ino = None
    pos = 0
    while True:
        try:
            st = path.stat()  # noqa: ASYNC240 - one stat per poll; no thread needed
        except FileNotFoundError:
            await asyncio.sleep(poll)
            continue
        # Rotated (another inode at the path, or ours was unlinked: inode numbers get
        # reused when rotations come faster than we poll) or truncated (shorter).
        rotated = f is not None and (st.st_ino != ino or os.fstat(f.fileno()).st_nlink == 0)
        if f is None or rotated or st.st_size < pos:
            if f is not None:
                # Rotated: read what was left in the old file first.
                rest = f.read()
                if rest:
                    yield rest
                f.close()
            rotated_from_start = f is not None
            try:
                f = open(path, "rb")  # noqa: SIM115
            except FileNotFoundError:
                f = None  # between a rotation's rename and the new file: look again
                await asyncio.sleep(poll)
                continue
            ino = st.st_ino
            pos = 0 if rotated_from_start or st.st_size < pos else st.st_size
            f.seek(pos)
        chunk = f.read()
        if chunk:
            pos += len(chunk)
            yield chunk
        else:
            await asyncio.sleep(poll)
