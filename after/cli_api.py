"""What every ``after`` command shares: the settings, one-line failures, and
:class:`Api`, the client of the daemon's REST port (its token, TLS, errors)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote

import aiohttp
import click
from yarl import URL

from after import __version__, config, tls
from after.config import Settings
from after.errors import AfterError

T = TypeVar("T")


def fail(message: str) -> NoReturn:
    click.echo(f"after: {message}", err=True)
    sys.exit(1)


def segment(value: str) -> str:
    """``value`` as exactly one URL path segment.

    Task ids and worker names come from the user: ``a/b`` must not become two segments,
    and ``.``/``..`` must not be resolved as dot-segments (``after task show ../workers``
    asks for the task named ``../workers``, it does not list workers). ``quote`` leaves
    dots alone, so a dot-only segment is encoded by hand; the URL is then sent as it is
    (see :meth:`Api.url`), since yarl would otherwise decode ``%2E`` and drop the segment.
    """
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


def _error_line(data: bytes, status: int) -> str:
    """The daemon's ``message`` (or the body's start, when it is not After's JSON) and the status."""
    try:
        parsed = json.loads(data)
        msg = parsed.get("message") if isinstance(parsed, dict) else None
    except ValueError:
        msg = None
    if not isinstance(msg, str):
        msg = data.decode(errors="replace").strip()[:200]
    return f"{msg} (HTTP {status})"


class Api:
    """A small synchronous client of the daemon's REST port (HTTPS verified: see :mod:`after.tls`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base = settings.base_url
        try:
            self.ssl = tls.client_context(settings.client_ca_file or None)
        except AfterError as exc:
            fail(exc.message)

    def url(self, path: str) -> URL:
        """The daemon's URL for ``path``, already encoded (its segments made by :func:`segment`)."""
        return URL(self.base + path, encoded=True)

    def _headers(self) -> dict[str, str]:
        token = self.settings.token()
        # The User-Agent tells the daemon a write is the CLI's (``by: "cli"`` of a pause).
        agent = {"User-Agent": f"after-cli/{__version__}"}
        return {"Authorization": f"Bearer {token}", **agent} if token else agent

    def session(self, total: float | None) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(ssl=self.ssl if self.ssl is not None else True)
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=total), connector=connector)

    def tls_failure(self, exc: aiohttp.ClientSSLError) -> str:
        """What to say when HTTPS with the daemon fails: the URL, why, and the setting to fix."""
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            why = getattr(exc.certificate_error, "verify_message", None) or str(exc.certificate_error)
            trusted = f"the CA file {self.settings.client_ca_file}" if self.settings.client_ca_file else "the system's CAs"
            return (
                f"the certificate of {self.base} does not verify against {trusted} ({why}): "
                "set client.ca_file (AFTER_CA_FILE) to the CA that signed it"
            )
        return f"TLS with {self.base} failed ({exc.os_error.strerror or exc.os_error}); does the daemon serve HTTPS (server.tls_cert)?"

    def run(self, go: Callable[[], Coroutine[Any, Any, T]], unreachable: str) -> T:
        """Run one exchange with the daemon; a failure to reach it is a one-line error."""
        try:
            return asyncio.run(go())
        except aiohttp.ClientSSLError as exc:
            fail(self.tls_failure(exc))
        except aiohttp.ClientConnectionError:
            fail(unreachable)

    def request(self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None, raw: bool = False) -> Any:
        async def go() -> Any:
            async with self.session(120) as session:
                kwargs: dict[str, Any] = {"headers": self._headers(), "params": params or {}}
                if body is not None:
                    kwargs["json"] = body
                async with session.request(method, self.url(path), **kwargs) as resp:
                    data = await resp.read()
                    if resp.status >= 400:
                        fail(_error_line(data, resp.status))
                    if raw:
                        return data
                    return json.loads(data) if data else None

        return self.run(go, f"no After daemon answers on {self.base} (start one with `after serve` or `after start NAME`)")

    def stream(self, path: str, params: dict[str, str], out: Callable[[bytes], None]) -> None:
        async def go() -> None:
            async with self.session(None) as session:
                async with session.get(self.url(path), params=params, headers=self._headers()) as resp:
                    if resp.status >= 400:
                        fail(_error_line(await resp.read(), resp.status))
                    async for chunk in resp.content.iter_any():
                        out(chunk)

        try:
            self.run(go, f"no After daemon answers on {self.base}")
        except KeyboardInterrupt:
            pass

    def alive(self) -> bool:
        """Whether a daemon answers; a daemon whose certificate does not verify is an error,
        not "no daemon" (starting another one on its port would only fail less clearly)."""

        async def go() -> bool:
            try:
                async with self.session(2) as session:
                    async with session.get(self.base + "/") as resp:
                        return resp.status == 200
            except aiohttp.ClientSSLError:
                raise
            except (aiohttp.ClientError, TimeoutError):
                return False

        return self.run(go, f"no After daemon answers on {self.base}")


def load_settings(ctx: click.Context) -> Settings:
    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        try:
            obj["settings"] = config.load(obj.get("config"), overrides=obj.get("overrides"))
        except AfterError as exc:
            fail(exc.message)
    settings: Settings = obj["settings"]
    return settings


def out_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))
