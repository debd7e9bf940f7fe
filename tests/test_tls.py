"""HTTPS on the REST port (``server.tls_cert``, ``server.tls_key``) and clients that verify
it (``client.ca_file`` for a private CA). Certificates come from ``trustme``: a CA made
for the test, and a certificate it signs for 127.0.0.1 (the ``pki`` and ``https_daemon``
fixtures of conftest.py, shared with the remote worker client's test)."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Couch, Daemon, daemon_env, wait_until

from after import config, tls
from after.embedded import free_port
from after.errors import ConfigError


def get(url: str, ca: Path | None) -> tuple[int, Any]:
    ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl.create_default_context()
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def after_cli(d: Daemon, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "after", *args], env={**d.env, **env}, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_the_daemon_serves_https_and_the_cli_verifies_it_with_the_ca_file(https_daemon: Daemon, pki: dict[str, Path]) -> None:
    d = https_daemon
    status, info = get(d.base + "/", pki["ca"])
    assert status == 200 and info["name"] == "after"
    wait_until((d.state / "daemon.json").exists, 30, "daemon.json")
    assert json.loads((d.state / "daemon.json").read_text())["url"] == d.base  # https in what it tells others
    # Plain HTTP on that port gets no API answer.
    with pytest.raises(OSError):
        urllib.request.urlopen(d.base.replace("https", "http") + "/", timeout=5)

    ok = after_cli(d, "start", "mailer", "--jobs", "testjobs", AFTER_CA_FILE=str(pki["ca"]))
    assert ok.returncode == 0 and "worker mailer started" in ok.stdout, ok.stderr
    assert "starting one in the background" not in ok.stderr  # `after start` saw the daemon up, over HTTPS
    listed = after_cli(d, "list", "--json", AFTER_CA_FILE=str(pki["ca"]))
    assert listed.returncode == 0, listed.stderr
    assert [w["name"] for w in json.loads(listed.stdout)] == ["mailer"]
    made = after_cli(d, "token", "--read-only", AFTER_CA_FILE=str(pki["ca"]))
    assert made.returncode == 0 and made.stdout.startswith("aft_"), made.stderr


def test_without_the_ca_the_cli_refuses_the_daemon_clearly(https_daemon: Daemon, pki: dict[str, Path]) -> None:
    d = https_daemon
    for args in (("list",), ("start", "mailer")):
        res = after_cli(d, *args)
        assert res.returncode == 1, res
        assert f"the certificate of {d.base} does not verify against the system's CAs" in res.stderr, res.stderr
        assert "client.ca_file" in res.stderr and "Traceback" not in res.stderr
    res = after_cli(d, "list", AFTER_CA_FILE=str(pki["cert"].parent / "missing.pem"))
    assert res.returncode == 1 and "client.ca_file" in res.stderr and "missing.pem: cannot read it" in res.stderr, res.stderr
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        get(d.base + "/", None)
    assert not (d.state / "logs" / "mailer.log").exists()  # nothing was started


def test_tls_settings_are_checked_and_bad_files_named(pki: dict[str, Path], tmp_path: Path) -> None:
    env = {"AFTER_TLS_CERT": str(pki["cert"]), "AFTER_TLS_KEY": str(pki["key"]), "AFTER_CA_FILE": str(pki["ca"])}
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    s = config.load(empty, env=env)
    assert (s.server_tls_cert, s.server_tls_key, s.client_ca_file) == (str(pki["cert"]), str(pki["key"]), str(pki["ca"]))
    assert s.base_url.startswith("https://") and config.load(empty, env={}).base_url.startswith("http://")
    toml = tmp_path / "after.toml"
    toml.write_text(f'[server]\ntls_cert = "{pki["cert"]}"\ntls_key = "{pki["key"]}"\n[client]\nca_file = "{pki["ca"]}"\n')
    assert config.load(toml, env={}).client_ca_file == str(pki["ca"])
    with pytest.raises(ConfigError, match=r"server\.tls_cert is set but server\.tls_key is not"):
        config.load(empty, env={"AFTER_TLS_CERT": str(pki["cert"])})
    with pytest.raises(ConfigError, match=r"server\.tls_key is set but server\.tls_cert is not"):
        config.load(empty, env={"AFTER_TLS_KEY": str(pki["key"])})

    assert isinstance(tls.server_context(str(pki["cert"]), str(pki["key"])), ssl.SSLContext)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        ((str(tmp_path / "nope.pem"), str(pki["key"])), f"server.tls_cert {tmp_path / 'nope.pem'}: cannot read it"),
        ((str(pki["cert"]), str(tmp_path / "nope.pem")), f"server.tls_key {tmp_path / 'nope.pem'}: cannot read it"),
        ((str(garbage), str(pki["key"])), f"server.tls_cert {garbage}: not a PEM certificate"),
        ((str(pki["cert"]), str(garbage)), f"server.tls_key {garbage}: not a PEM private key"),
        ((str(pki["cert"]), str(pki["other_key"])), f"server.tls_key {pki['other_key']} is not the key of server.tls_cert {pki['cert']}"),
        ((str(tmp_path), str(pki["key"])), f"server.tls_cert {tmp_path}: "),
    ]
    for (cert, key), message in cases:
        with pytest.raises(ConfigError) as exc:
            tls.server_context(cert, key)
        assert exc.value.message.startswith(message), exc.value.message
    assert tls.client_context(None) is None and tls.client_context("") is None
    assert isinstance(tls.client_context(str(pki["ca"])), ssl.SSLContext)
    with pytest.raises(ConfigError, match=r"client\.ca_file .*garbage\.pem: not a PEM CA certificate"):
        tls.client_context(str(garbage))


def test_a_daemon_with_a_mismatched_key_does_not_start(couch: Couch, dbname: str, tmp_path: Path, pki: dict[str, Path]) -> None:
    state = tmp_path / "state"
    env = daemon_env(couch, dbname, state, free_port(), AFTER_TLS_CERT=str(pki["cert"]), AFTER_TLS_KEY=str(pki["other_key"]))
    res = subprocess.run([sys.executable, "-m", "after", "serve"], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 1
    assert f"server.tls_key {pki['other_key']} is not the key of server.tls_cert {pki['cert']}" in res.stderr, res.stderr
    assert not (state / "daemon.lock").exists()  # refused before it took anything
