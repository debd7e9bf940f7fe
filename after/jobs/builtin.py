"""The built-in jobs every worker has."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

from after import procgroup
from after.jobs import JobFailed, JobFunc, TaskContext

#: Output kept per stream of a ``shell`` job; more is cut (and said so) to keep documents small.
OUTPUT_LIMIT = 64 * 1024


async def noop(ctx: TaskContext, *args: Any, **kwargs: Any) -> None:
    """Do nothing (benchmarks, tests, heartbeats)."""
    return None


async def sleep(ctx: TaskContext, seconds: float = 1.0) -> float:
    """Sleep ``seconds``, reporting progress each second."""
    total = float(seconds)
    slept = 0.0
    while slept < total:
        step = min(1.0, total - slept)
        await asyncio.sleep(step)
        slept += step
        ctx.progress(round(slept, 3), total)
    return total


def _cut(data: bytes) -> str:
    text = data[:OUTPUT_LIMIT].decode(errors="replace")
    if len(data) > OUTPUT_LIMIT:
        text += f"\n[... {len(data) - OUTPUT_LIMIT} more bytes cut]"
    return text


async def shell(
    ctx: TaskContext,
    command: str,
    *args: str,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> dict[str, Any]:
    """Run a command; result ``{"stdout", "stderr", "exit_code"}``; non-zero exit fails the task.

    One string and no arguments runs through ``/bin/sh -c`` (so ``"echo hi"`` works);
    with arguments it is executed directly, no shell involved. The command runs in its
    own process group, so a timeout or a cancel kills its children too.
    """
    argv = [str(command), *map(str, args)] if args else ["/bin/sh", "-c", str(command)]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env={**os.environ, **env} if env else None,
        # Its own process group, killed with the worker (after.procgroup).
        **procgroup.spawn_options(),
    )
    try:
        with procgroup.tracked(ctx.id, proc.pid):
            out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    except BaseException:
        # Timeout or cancel: the whole group goes, not only the shell.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()
        raise
    result = {"stdout": _cut(out).rstrip("\n"), "stderr": _cut(err).rstrip("\n"), "exit_code": proc.returncode}
    if proc.returncode != 0:
        raise JobFailed(f"command exited with {proc.returncode}: {str(result['stderr'])[-500:]}", result=result)
    return result


async def http(
    ctx: TaskContext,
    url: str,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Call a URL; result ``{"status", "body"}`` (JSON when the answer is JSON); non-2xx fails."""
    import aiohttp  # here, not at module level: isolated job processes start faster without it

    kwargs: dict[str, Any] = {"headers": headers or {}}
    if isinstance(body, dict | list):
        kwargs["json"] = body
    elif body is not None:
        kwargs["data"] = str(body)
    try:
        return await _request(aiohttp, method, url, kwargs, timeout)
    except TimeoutError as exc:
        raise JobFailed(f"{method.upper()} {url}: no answer within {timeout}s", result=None) from exc
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        # Refused, unreachable, a bad URL: the call failed (reason ``failed``, as for a
        # non-2xx answer), which is not a crash of the job.
        raise JobFailed(f"{method.upper()} {url}: {type(exc).__name__}: {exc}", result=None) from exc


async def _request(aiohttp: Any, method: str, url: str, kwargs: dict[str, Any], timeout: float) -> dict[str, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        async with session.request(method.upper(), url, **kwargs) as resp:
            raw = await resp.read()
            text = _cut(raw)
            try:
                parsed: Any = json.loads(text)
            except ValueError:
                parsed = text
            result = {"status": resp.status, "body": parsed}
            if not 200 <= resp.status < 300:
                raise JobFailed(f"{method.upper()} {url} answered {resp.status}", result=result)
            return result


async def compact_couchdb(ctx: TaskContext, database: str | None = None) -> dict[str, Any]:
    """``POST /{db}/_compact`` on the configured CouchDB (default: After's own database)."""
    from after.store import Store

    cfg = ctx.settings
    store = Store(cfg["couchdb_url"], database or cfg["couchdb_database"], user=cfg.get("couchdb_user"), password=cfg.get("couchdb_password"))
    async with store:
        return await store.compact()


BUILTINS: dict[str, JobFunc] = {
    "noop": noop,
    "sleep": sleep,
    "shell": shell,
    "http": http,
    "compact_couchdb": compact_couchdb,
}

# The built-ins are written to be cancellable (shell kills its process group): inline.
for _func in BUILTINS.values():
    _func.__after_isolated__ = False  # type: ignore[attr-defined]
