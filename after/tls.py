"""HTTPS for the REST port: the daemon's server context, and the one its clients verify with.

The daemon serves HTTPS when ``server.tls_cert`` and ``server.tls_key`` name a PEM
certificate chain and its private key (:func:`server_context`; a file that cannot be
read or that does not match is a ConfigError naming it, and the daemon does not
start). Clients (the CLI, ``after.client``) verify the daemon's certificate against the
system's CAs, or against ``client.ca_file`` alone for a private CA
(:func:`client_context`). Verification is never switched off: a certificate that does
not check out is an error naming the URL and the setting to fix.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from after.errors import ConfigError


def _readable(path: str, setting: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise ConfigError(f"{setting} {path}: cannot read it ({exc.strerror or exc})") from None
    if Path(path).is_dir():
        raise ConfigError(f"{setting} {path}: is a directory, not a PEM file")


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """The daemon's TLS context (TLS 1.2 at least), from ``server.tls_cert`` and ``server.tls_key``."""
    _readable(cert, "server.tls_cert")
    _readable(key, "server.tls_key")
    try:
        ssl.create_default_context(cafile=cert)  # parses the chain alone: a bad one is named as such
    except ssl.SSLError as exc:
        raise ConfigError(f"server.tls_cert {cert}: not a PEM certificate ({exc.reason or exc})") from None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(f"server.tls_key {key} is not the key of server.tls_cert {cert}") from None
        raise ConfigError(f"server.tls_key {key}: not a PEM private key, or one with a passphrase ({exc.reason or exc})") from None
    return ctx


def client_context(ca_file: str | None) -> ssl.SSLContext | None:
    """How a client of the REST port verifies the daemon: None (the system's CAs, aiohttp's
    default), or a context trusting ``ca_file`` (PEM; ``client.ca_file``) alone."""
    if not ca_file:
        return None
    _readable(ca_file, "client.ca_file")
    try:
        return ssl.create_default_context(cafile=ca_file)
    except ssl.SSLError as exc:
        raise ConfigError(f"client.ca_file {ca_file}: not a PEM CA certificate ({exc.reason or exc})") from None
