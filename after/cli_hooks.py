"""``after task add --notify URL --notify-on done,err``: the completion webhooks of a new task.

Apart from :mod:`after.cli_tasks` so that the command there gains two options and one line.
The URL and the outcomes are checked by the daemon like any REST body (422 naming
``notify[0].url``); only what the command line itself can get wrong is refused here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from after.schema import OUTCOMES

F = TypeVar("F", bound=Callable[..., Any])


def options(f: F) -> F:
    """The two options of ``after task add``."""
    f = click.option(
        "--notify-on",
        "notify_on",
        default=None,
        metavar="OUTCOMES",
        help=f"Outcomes the --notify URLs are told of, comma-separated (default: {','.join(OUTCOMES)}).",
    )(f)
    return click.option(
        "--notify",
        "notify",
        multiple=True,
        metavar="URL",
        help="POST the task's outcome (signed JSON) to this URL; repeatable. See the README, Completion webhooks.",
    )(f)


def field(notify: tuple[str, ...], notify_on: str | None) -> dict[str, Any]:
    """``{"notify": [{url, on}, ...]}`` for the task's body, or nothing."""
    if notify_on is not None and not notify:
        raise click.BadParameter("--notify-on needs at least one --notify URL", param_hint="--notify-on")
    if not notify:
        return {}
    hook: dict[str, Any] = {}
    if notify_on is not None:
        on = [o.strip() for o in notify_on.split(",") if o.strip()]
        wrong = [o for o in on if o not in OUTCOMES]
        if wrong or not on:
            raise click.BadParameter(f"expected some of {', '.join(OUTCOMES)}, got {notify_on!r}", param_hint="--notify-on")
        hook["on"] = on
    return {"notify": [{"url": url, **hook} for url in notify]}
