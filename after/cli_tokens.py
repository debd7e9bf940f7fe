"""``after token``: the admin token, and scoped tokens (a remote worker's, a dashboard's)
issued, listed and revoked through the REST port with it."""

from __future__ import annotations

from typing import Any

import click

from after import tokens
from after.cli_api import Api, fail, load_settings, out_json, segment


@click.command()
@click.option("--worker", metavar="NAME", default=None, help="Issue a token for worker NAME's remote protocol calls only (for its host).")
@click.option("--read-only", "read_only", is_flag=True, help="Issue a read-only token (dashboards: GET of everything but /tokens).")
@click.option("--label", default=None, help="What the new token is for (shown by --list).")
@click.option("--list", "list_tokens", is_flag=True, help="List the tokens issued on this database (never their secrets).")
@click.option("--revoke", metavar="ID", default=None, help="Revoke a token (its id, as --list shows, or the token itself).")
@click.option("--json", "as_json", is_flag=True, help="JSON output (with --worker, --read-only, --list, --revoke).")
@click.pass_context
def token(ctx: click.Context, worker: str | None, read_only: bool, label: str | None, list_tokens: bool, revoke: str | None, as_json: bool) -> None:
    """Print the admin API token; or issue, list and revoke scoped tokens.

    Without options: the admin token (the daemon makes one on its first start). The
    others go through the REST port with the admin token: --worker NAME and --read-only
    print a new token once (keep it: only its hash is stored), --list shows every token,
    --revoke ID refuses one from then on.
    """
    given = {"--worker": worker is not None, "--read-only": read_only, "--list": list_tokens, "--revoke": revoke is not None}
    actions = [flag for flag, on in given.items() if on]
    if len(actions) > 1:
        raise click.UsageError(f"{' and '.join(actions)} cannot be combined: one action at a time")
    if label is not None and actions not in (["--worker"], ["--read-only"]):
        raise click.UsageError("--label goes with --worker NAME or --read-only (it names a new token)")
    settings = load_settings(ctx)
    value = settings.token()
    if not actions:
        if not value:
            fail("no token yet: start the daemon once (`make run` or `after serve`), or set server.api_token")
        click.echo(value)
        return
    if not value:
        fail("scoped tokens are issued with the admin token, and there is none here: run this on the daemon's host, or set server.api_token")
    api = Api(settings)
    if list_tokens:
        listed = api.request("GET", "/tokens")["tokens"]
        if as_json:
            out_json(listed)
            return
        click.echo(f"{'ID':<17} {'SCOPE':<7} {'WORKER':<16} {'CREATED':<25} {'REVOKED':<25} LABEL")
        for t in listed:
            created, revoked = t.get("created") or "-", t.get("revoked") or "-"
            click.echo(f"{t['id']:<17} {t['scope']:<7} {t.get('worker') or '-':<16} {created:<25} {revoked:<25} {t.get('label') or ''}")
        return
    if revoke is not None:
        parsed = tokens.parse(revoke)
        token_id = parsed[0] if parsed else revoke.removeprefix(tokens.DOC_PREFIX)
        done = api.request("DELETE", f"/tokens/{segment(token_id)}")
        if as_json:
            out_json(done)
        else:
            click.echo(f"token {done['id']} revoked at {done['revoked']}")
        return
    body: dict[str, Any] = {"scope": "worker", "worker": worker} if worker is not None else {"scope": "read"}
    if label is not None:
        body["label"] = label
    made = api.request("POST", "/tokens", body=body)
    if as_json:
        out_json(made)
        return
    click.echo(made["token"])
    what = f"worker {made['worker']}'s protocol calls" if made["scope"] == "worker" else "reads"
    click.echo(f"(token {made['id']}, for {what}; shown this once: keep it. Revoke it with `after token --revoke {made['id']}`)", err=True)
