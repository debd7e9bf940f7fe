"""``after.client``: a remote worker of After in Python, over the REST port alone.

::

    from after.client import Worker, Permanent

    def send_report(ctx, report_id, *, to):
        ctx.progress(0, 1)
        ctx.log(f"sending {report_id} to {to}")
        ...
        return {"sent": True}

    Worker("https://after.example:5985", "mailer", token).run({"send_report": send_report})

Jobs are called as a local worker's are, ``fn(ctx, *arguments, **kwargs)``, sync (in a
thread) or async (on the loop). ``ctx`` is a :class:`Context`: ``progress``, ``log``,
``task``, ``id``, ``cancelled``. What a job returns is the task's result; what it raises
fails the attempt (retried by the task's policy, unless it is a :class:`Permanent`).

It speaks docs/worker-protocol.md and imports only the standard library and aiohttp,
none of the daemon's modules (a test holds it to that): a worker host needs no daemon.
From a shell: ``python -m after.client --help``.
"""

from after.client.jobs import Context, Permanent, load
from after.client.wire import CallError, Refused, SessionGone, Stale
from after.client.worker import Worker

__all__ = ["CallError", "Context", "Permanent", "Refused", "SessionGone", "Stale", "Worker", "load"]
