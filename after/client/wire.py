"""The HTTP calls of the worker protocol (docs/worker-protocol.md), with the retries a
worker on another host needs: a network error, a timeout or a 5xx is retried with
backoff (the daemon restarting, a link that drops), and an answer that says what to do
is raised as the error that says it (:class:`SessionGone`: connect again; :class:`Stale`:
drop the task; :class:`Refused`: the call itself is wrong).

Only the standard library and aiohttp: a worker host needs nothing of the daemon.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import time
from typing import Any
from urllib.parse import quote

import aiohttp

log = logging.getLogger("after.client")

#: Backoff between retries of a failed call: doubling from the first, up to the last.
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0


class CallError(Exception):
    """The daemon answered a call with an error it means (a 4xx)."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status, self.error, self.message = status, error, message


class SessionGone(CallError):
    """404 ``session_gone``: the session expired or the daemon restarted; connect again."""


class Stale(CallError):
    """409: the task (or the name) is not this worker's any more; drop it."""


class Refused(CallError):
    """Any other 4xx: a wrong token (401/403), URL or body; or a certificate that does not
    verify (status 0): retrying cannot help."""


class Transient(Exception):
    """One attempt failed in a way a retry may mend (network, timeout, 5xx)."""


def ssl_context(url: str, ca_file: str | None) -> ssl.SSLContext | None:
    """Certificates verified for https (with ``ca_file`` for a private CA); None for http."""
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    return ssl.create_default_context() if url.startswith("https:") else None


def encode(body: Any) -> bytes:
    """A body as JSON, refusing what JSON cannot carry (NaN, sets, objects): ValueError/TypeError."""
    return json.dumps(body, allow_nan=False, separators=(",", ":")).encode()


class Wire:
    """Calls under ``{url}/workers/{name}/`` with the worker's token."""

    def __init__(self, url: str, name: str, token: str, *, ca_file: str | None = None) -> None:
        self.base = f"{url.rstrip('/')}/workers/{quote(name, safe='')}"
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._ssl = ssl_context(url, ca_file)
        self._ca_file = ca_file
        self._http: aiohttp.ClientSession | None = None
        #: The longest pause between retries: the worker sets its heartbeat, so that a
        #: worker whose link came back calls again before its session times out.
        self.backoff_max = BACKOFF_MAX

    async def __aenter__(self) -> Wire:
        # No bound on sockets: at most one poll, one heartbeat per running task and a few batches.
        connector = aiohttp.TCPConnector(limit=0, ssl=self._ssl if self._ssl is not None else True)
        self._http = aiohttp.ClientSession(headers=self._headers, connector=connector)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()

    async def once(self, path: str, body: Any, *, timeout: float = 30.0) -> dict[str, Any]:
        """One attempt: the answer, a :class:`CallError`, or :class:`Transient`."""
        assert self._http is not None, "use the Wire as an async context manager"
        data = body if isinstance(body, bytes) else encode(body)
        try:
            async with self._http.post(self.base + path, data=data, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                text = await resp.text()
                status = resp.status
        except ssl.SSLCertVerificationError as exc:
            # Not the network: this daemon's certificate does not verify (retrying cannot help).
            where = f"against {self._ca_file}" if self._ca_file else "against the system's CAs (a private CA needs ca_file / --ca-file)"
            raise Refused(0, "certificate", f"the certificate of {self.base} does not verify {where}: {exc}") from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise Transient(f"{type(exc).__name__}: {exc}") from exc
        try:
            answer = json.loads(text) if text else {}
        except ValueError:
            answer = {"error": "not_json", "message": text[:200]}
        if status < 300:
            return answer if isinstance(answer, dict) else {"answer": answer}
        error, message = str(answer.get("error") or status), str(answer.get("message") or text[:200])
        if status >= 500 or status == 429:
            raise Transient(f"{status} {error}: {message}")
        if status == 404 and error == "session_gone":
            raise SessionGone(status, error, message)
        if status == 409:
            raise Stale(status, error, message)
        raise Refused(status, error, message)

    async def call(self, path: str, body: Any, *, timeout: float = 30.0, give_up_after: float | None = None) -> dict[str, Any]:
        """The answer of ``path``, retried with backoff while it fails transiently (for
        ever, or until ``give_up_after`` seconds, then the last :class:`Transient`)."""
        data = body if isinstance(body, bytes) else encode(body)
        delay, started, failing = BACKOFF_FIRST, time.monotonic(), False
        while True:
            try:
                answer = await self.once(path, data, timeout=timeout)
            except Transient as exc:
                if give_up_after is not None and time.monotonic() - started + delay > give_up_after:
                    raise
                if not failing:
                    log.warning("%s: %s; retrying", path, exc)
                    failing = True
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.backoff_max)
                continue
            if failing:
                log.info("%s: answered again after %.1fs", path, time.monotonic() - started)
            return answer
