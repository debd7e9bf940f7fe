"""Worker log files: written by the daemon only, rotated by size, followed across rotation.

The daemon reads each worker's stdout/stderr from a pipe and appends it here, so it is
the single writer: it can rotate (``NAME.log`` -> ``NAME.log.1`` ...) and truncate
(``after clean``) safely while the worker runs, and a follower (``after log -f``)
reopens the file when it was rotated or truncated.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path


class LogFile:
    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "ab")  # noqa: SIM115 - kept open for the worker's life

    def write(self, data: bytes) -> None:
        self._f.write(data)
        self._f.flush()
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
    yield tail(path, start_lines)
    f = None
    ino = None
    pos = 0
    while True:
        try:
            st = path.stat()  # noqa: ASYNC240 - one stat per poll; no thread needed
        except FileNotFoundError:
            await asyncio.sleep(poll)
            continue
        if f is None or st.st_ino != ino or st.st_size < pos:
            if f is not None:
                # Rotated: read what was left in the old file first.
                rest = f.read()
                if rest:
                    yield rest
                f.close()
            rotated_from_start = f is not None
            f = open(path, "rb")  # noqa: SIM115
            ino = st.st_ino
            pos = 0 if rotated_from_start or st.st_size < pos else st.st_size
            f.seek(pos)
        chunk = f.read()
        if chunk:
            pos += len(chunk)
            yield chunk
        else:
            await asyncio.sleep(poll)
