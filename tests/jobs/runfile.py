"""How the test jobs record their runs: one line per run, appended with O_APPEND (one
write each, so lines from many processes never interleave). Shared by the local jobs
(testjobs) and the remote ones (remotejobs), which must not import the daemon."""

from __future__ import annotations

import os


def append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
