"""Settings: ``etc/after.toml``, then ``AFTER_*`` environment variables, then CLI options.

Every setting has one name used everywhere: ``section.key`` in the TOML file, and the
attribute ``section_key`` on :class:`Settings` (``server.port`` -> ``server_port``). The
environment variables PRODUCT.md names (``AFTER_COUCHDB_URL``, ``AFTER_PORT``,
``AFTER_STATE_DIR``, ``AFTER_API_TOKEN``) are kept short, as are those of HTTPS
(``AFTER_TLS_CERT``, ``AFTER_TLS_KEY``, ``AFTER_CA_FILE``); every other setting can be set
as ``AFTER_<SECTION>_<KEY>``. A wrong type or an unknown key is a ConfigError naming it:
a typo in a config file must not silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from after.errors import ConfigError

#: What a webhook URL looks like and the outcomes one may be for (as in after.schema, which
#: this module does not import: the settings load before anything else).
URL_PATTERN = r"^https?://[^\s/?#]+[^\s]*$"
OUTCOMES = ("done", "err", "canceled")

#: The checkout (or installed tree) this package lives in. ``var/``, ``etc/`` and
#: ``node_modules/`` are looked up relative to it when not configured.
ROOT = Path(__file__).resolve().parent.parent

SHORT_ENV = {
    "AFTER_COUCHDB_URL": "couchdb_url",
    "AFTER_PORT": "server_port",
    "AFTER_HOST": "server_host",
    "AFTER_STATE_DIR": "state_dir",
    "AFTER_API_TOKEN": "server_api_token",
    "AFTER_DATABASE": "couchdb_database",
    "AFTER_TLS_CERT": "server_tls_cert",
    "AFTER_TLS_KEY": "server_tls_key",
    "AFTER_CA_FILE": "client_ca_file",
}


@dataclasses.dataclass
class Settings:
    # [server]
    server_host: str = "127.0.0.1"
    server_port: int = 5985
    server_api_token: str = ""
    server_protect_reads: bool = False
    server_max_body_bytes: int = 1024 * 1024
    server_cors_origins: list[str] = dataclasses.field(default_factory=list)
    # HTTPS: the certificate chain and private key files (PEM); both or neither.
    server_tls_cert: str = ""
    server_tls_key: str = ""
    # [client] (the CLI's calls of the REST port): a CA file (PEM) to verify the daemon's
    # certificate with, for a private CA; empty = the system's CAs.
    client_ca_file: str = ""
    # [couchdb]
    couchdb_url: str = ""
    couchdb_user: str = ""
    couchdb_password: str = ""
    couchdb_database: str = "after"
    # The account programs writing tasks straight into CouchDB use (role after_client);
    # only shown by `after couchdb`. The embedded server has its own (after_client).
    couchdb_client_user: str = "after_client"
    couchdb_client_password: str = ""
    couchdb_embedded_server: str = ""
    # [state]
    state_dir: str = ""
    # [scheduler]
    scheduler_lease_seconds: float = 30.0
    scheduler_claim_ahead: float = 2.0
    scheduler_window_seconds: float = 60.0
    scheduler_default_timeout: float = 3600.0
    scheduler_history_limit: int = 50
    scheduler_log_limit: int = 200
    scheduler_runs_limit: int = 20
    scheduler_retention_days: float = 7.0
    scheduler_purge_interval: float = 300.0
    scheduler_claim_batch: int = 500
    scheduler_takeover_delay: float = 5.0
    scheduler_heartbeat_seconds: float = 2.0
    # [workers]
    workers_log_max_bytes: int = 10 * 1024 * 1024
    workers_log_backups: int = 3
    workers_restart_max_delay: float = 60.0
    workers_shutdown_timeout: float = 30.0
    # Warm job processes per worker (isolated jobs): 0 = the worker's concurrency.
    workers_pool_size: int = 0
    # Jobs a job process runs before it is replaced (0: no limit).
    workers_max_tasks_per_process: int = 1000
    # A job process past this resident memory is killed (mid-job: the task fails) or
    # replaced (between jobs); 0: no ceiling.
    workers_max_memory_mb: float = 1024.0
    workers_autostart: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # [notify] completion webhooks (after/webhooks.py, after/notifier.py): the HMAC key of the
    # X-After-Signature header, each attempt's timeout, attempts per delivery and the backoff
    # between them, the queue bound, how old an outcome may be and still be delivered, the
    # deliveries kept in a task, and [[notify.hooks]] {url, on} for every task.
    notify_secret: str = ""
    notify_timeout: float = 10.0
    notify_attempts: int = 5
    notify_backoff_base: float = 1.0
    notify_backoff_max: float = 60.0
    notify_queue: int = 1000
    notify_senders: int = 4
    notify_max_age: float = 86400.0
    notify_keep: int = 20
    notify_hooks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # [jobs.NAME] command = "..." : shell jobs declared by the operator
    jobs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # where the settings came from, for messages
    config_file: str = ""

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir) if self.state_dir else ROOT / "var"

    @property
    def embedded(self) -> bool:
        return not self.couchdb_url

    @property
    def tls(self) -> bool:
        """The daemon serves HTTPS (``server.tls_cert`` and ``server.tls_key`` are set)."""
        return bool(self.server_tls_cert)

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.server_host in ("0.0.0.0", "") else self.server_host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.server_port}"

    @property
    def token_file(self) -> Path:
        return self.state_path / "token"

    def token(self) -> str:
        """The API token: configured, or the one the daemon generated on its first start."""
        if self.server_api_token:
            return self.server_api_token
        try:
            return self.token_file.read_text().strip()
        except FileNotFoundError:
            return ""

    def ensure_token(self) -> str:
        """Return the token, creating the 0600 token file when none is configured."""
        token = self.token()
        if token:
            return token
        self.state_path.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token

    def public(self) -> dict[str, Any]:
        """Settings safe to show (no token, no CouchDB credentials)."""
        out = dataclasses.asdict(self)
        out["server_api_token"] = "***" if self.server_api_token else ""
        out["couchdb_password"] = "***" if self.couchdb_password else ""
        out["couchdb_client_password"] = "***" if self.couchdb_client_password else ""
        out["notify_secret"] = "***" if self.notify_secret else ""
        out["couchdb_url"] = redact_url(self.couchdb_url)
        return out


def redact_url(url: str) -> str:
    """``http://u:p@h`` -> ``http://u:***@h``: URLs are logged, credentials never."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_TABLES = {"workers_autostart", "jobs"}


def _coerce(name: str, value: Any, where: str) -> Any:
    """Convert ``value`` to the type of setting ``name``, or raise ConfigError naming it."""
    if name == "notify_hooks":
        return _hooks(value, where)
    default = getattr(Settings(), name)
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off", ""):
                    return False
                raise ValueError(value)
            if isinstance(value, bool):
                return value
            raise ValueError(value)
        if isinstance(default, int):
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if isinstance(default, list):
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return value
            raise ValueError(value)
        if isinstance(default, str):
            if not isinstance(value, str | int):
                raise ValueError(value)
            return str(value)
    except ValueError:
        kind = type(default).__name__
        raise ConfigError(f"{where}: expected {kind}, got {value!r}") from None
    return value


def _hooks(value: Any, where: str) -> list[dict[str, Any]]:
    """``[[notify.hooks]]`` tables, or their JSON text (``AFTER_NOTIFY_HOOKS``), checked."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError:
            raise ConfigError(f"{where}: expected a JSON list of {{url, on}}, got {value!r:.80}") from None
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of tables [[notify.hooks]], got {value!r:.80}")
    out = []
    for i, hook in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(hook, dict):
            raise ConfigError(f"{at}: expected a table {{url, on}}, got {hook!r:.80}")
        unknown = sorted(set(hook) - {"url", "on"})
        if unknown:
            raise ConfigError(f"{at}.{unknown[0]}: unknown key (a hook has url and on)")
        url = hook.get("url")
        if not isinstance(url, str) or not re.match(URL_PATTERN, url):
            raise ConfigError(f"{at}.url: expected an http(s) URL, got {url!r:.80}")
        on = hook.get("on", list(OUTCOMES))
        if not isinstance(on, list) or not on or any(o not in OUTCOMES for o in on):
            raise ConfigError(f"{at}.on: expected a non-empty list of {', '.join(OUTCOMES)}, got {on!r:.80}")
        out.append({"url": url, "on": list(on)})
    return out


def _flatten(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section, body in data.items():
        if section in ("workers", "jobs") and isinstance(body, dict):
            for key, value in body.items():
                if section == "jobs" or isinstance(value, dict):
                    if not isinstance(value, dict):
                        raise ConfigError(f"{source}: [{section}.{key}] must be a table")
                    table = "jobs" if section == "jobs" else "workers_autostart"
                    out.setdefault(table, {})[key] = value
                else:
                    out[f"{section}_{key}"] = value
            continue
        if section == "state_dir" or not isinstance(body, dict):
            out[section] = body
            continue
        for key, value in body.items():
            name = "state_dir" if (section, key) == ("state", "dir") else f"{section}_{key}"
            out[name] = value
    return out


def load(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read the settings: file < environment < overrides (CLI options).

    ``path`` defaults to ``$AFTER_CONFIG``, else ``etc/after.toml`` beside the package
    when it exists. A missing explicit file is an error; a missing default one is not.
    """
    env = os.environ if env is None else env
    explicit = path or env.get("AFTER_CONFIG")
    file = Path(explicit) if explicit else ROOT / "etc" / "after.toml"
    values: dict[str, Any] = {}
    if file.exists():
        try:
            data = tomllib.loads(file.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
        values.update(_flatten(data, str(file)))
    elif explicit:
        raise ConfigError(f"config file {file} does not exist")

    for var, value in env.items():
        if not var.startswith("AFTER_") or var in ("AFTER_CONFIG",) or var.startswith("AFTER_TEST_"):
            continue
        if var.startswith("AFTER_BENCH_"):
            continue
        name = SHORT_ENV.get(var) or var[len("AFTER_") :].lower()
        if name in _FIELDS and name not in _TABLES:
            values[name] = value
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = value

    settings = Settings(config_file=str(file) if file.exists() else "")
    for name, value in values.items():
        if name not in _FIELDS or name == "config_file":
            section, _, key = name.partition("_")
            raise ConfigError(f"{file}: unknown setting {section}.{key}")
        if name in _TABLES:
            setattr(settings, name, value)
        else:
            setattr(settings, name, _coerce(name, value, name.replace("_", ".", 1)))
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    if not 0 < s.server_port < 65536:
        raise ConfigError(f"server.port must be 1..65535, got {s.server_port}")
    if s.scheduler_lease_seconds <= 0:
        raise ConfigError("scheduler.lease_seconds must be > 0")
    if not 0 <= s.scheduler_claim_ahead <= s.scheduler_lease_seconds / 2:
        raise ConfigError("scheduler.claim_ahead must be between 0 and half of scheduler.lease_seconds")
    if not 0 <= s.scheduler_takeover_delay <= 3600:
        raise ConfigError("scheduler.takeover_delay must be between 0 and 3600 seconds")
    if not 0.1 <= s.scheduler_heartbeat_seconds <= 300:
        raise ConfigError("scheduler.heartbeat_seconds must be between 0.1 and 300")
    if s.scheduler_window_seconds < 2:
        raise ConfigError("scheduler.window_seconds must be >= 2")
    if not 0 <= s.workers_pool_size <= 1000:
        raise ConfigError(f"workers.pool_size must be 0 (the worker's concurrency) .. 1000, got {s.workers_pool_size}")
    if s.workers_max_tasks_per_process < 0:
        raise ConfigError(f"workers.max_tasks_per_process must be >= 0 (0: no limit), got {s.workers_max_tasks_per_process}")
    if s.workers_max_memory_mb < 0:
        raise ConfigError(f"workers.max_memory_mb must be >= 0 (0: no ceiling), got {s.workers_max_memory_mb:g}")
    if bool(s.server_tls_cert) != bool(s.server_tls_key):
        given, missing = ("server.tls_cert", "server.tls_key") if s.server_tls_cert else ("server.tls_key", "server.tls_cert")
        raise ConfigError(f"{given} is set but {missing} is not: HTTPS needs both (AFTER_TLS_CERT and AFTER_TLS_KEY), or neither")
    if s.couchdb_url and "://" not in s.couchdb_url:
        raise ConfigError(f"couchdb.url must be an http(s) URL, got {redact_url(s.couchdb_url)!r}")
    if not s.couchdb_database or not s.couchdb_database[0].islower():
        raise ConfigError("couchdb.database must start with a lowercase letter")
    if not 0 < s.notify_timeout <= 300:
        raise ConfigError(f"notify.timeout must be > 0 and at most 300 seconds, got {s.notify_timeout:g}")
    if not 1 <= s.notify_attempts <= 100:
        raise ConfigError(f"notify.attempts must be 1..100, got {s.notify_attempts}")
    if not 0 <= s.notify_backoff_base <= s.notify_backoff_max <= 86400:
        got = f"{s.notify_backoff_base:g} and {s.notify_backoff_max:g}"
        raise ConfigError(f"notify.backoff_base and notify.backoff_max must satisfy 0 <= base <= max <= 86400, got {got}")
    if not 1 <= s.notify_queue <= 1_000_000:
        raise ConfigError(f"notify.queue must be 1..1000000, got {s.notify_queue}")
    if not 1 <= s.notify_senders <= 100:
        raise ConfigError(f"notify.senders must be 1..100, got {s.notify_senders}")
    if s.notify_max_age <= 0:
        raise ConfigError(f"notify.max_age must be > 0 seconds, got {s.notify_max_age:g}")
    if not 1 <= s.notify_keep <= 1000:
        raise ConfigError(f"notify.keep must be 1..1000, got {s.notify_keep}")
    for name, job in s.jobs.items():
        if not isinstance(job.get("command"), str | list):
            raise ConfigError(f'[jobs.{name}] needs command = "..." (a string or a list)')
