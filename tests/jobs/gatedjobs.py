"""A jobs module whose import a test can hold or fail, to hold a restarted worker down.

A worker imports its ``--jobs`` modules before it says hello. With ``AFTER_TEST_GATE``
set (in the daemon's environment, which its workers inherit) to a path:

- while ``<path>`` exists the import waits (the worker stays ``starting``);
- while ``<path>.crash`` exists the import ends the process (exit 29, before hello).

So a test sees a dead or restarting worker for as long as it needs, instead of racing
the supervisor's half-second restart.
"""

from __future__ import annotations

import os
import time

from after.jobs import TaskContext, job

_GATE = os.environ.get("AFTER_TEST_GATE", "")

if _GATE:
    if os.path.exists(_GATE + ".crash"):
        os._exit(29)
    _deadline = time.monotonic() + 300
    while os.path.exists(_GATE) and time.monotonic() < _deadline:
        time.sleep(0.05)


@job(isolated=False)
def close_channel(ctx: TaskContext) -> str:
    """Shut down this worker's channel to the daemon from inside (both directions), as a
    broken socket or a bug in its read loop would: the worker process lives on a moment."""
    import socket
    import sys

    fd = int(sys.argv[sys.argv.index("--fd") + 1])
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sock.shutdown(socket.SHUT_RDWR)
    finally:
        sock.close()
    return ctx.id
