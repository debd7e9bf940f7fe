"""Property-based: schemathesis reads the live daemon's /openapi.json, generates requests
for every operation (valid ones, and invalid ones), sends them with the token, and checks
each answer: never a 5xx, and status, content type, headers and body as the spec says.

Bounded (a few examples per operation and mode, no deadline) to stay fast; a failure
prints the request to reproduce it. The two endless streams (``/events``, and a log
with ``follow``) are exercised in their own tests, not here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from conftest import Couch, Daemon, http
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from test_api import running_daemon

#: negative_data_rejection: a request the spec forbids must be refused (4xx): the spec and
#: the validation come from one definition (after.schema), so they cannot disagree.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
#: Examples per operation and generation mode. Each worker start costs a process, so less there.
EXAMPLES = 20
EXAMPLES_FOR = {"start_worker": 3}
SKIP = {"task_events"}  # an endless stream: see test_api_events.py


@pytest.fixture(scope="module")
def live(couch: Couch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(couch, tmp_path_factory.mktemp("schema")) as d:
        yield d


def _finite(case: Any) -> None:
    """Keep log requests finite: ``follow`` streams for ever by design."""
    if isinstance(case.query, dict) and case.query.get("follow") in ("1", "true", 1, True):
        case.query["follow"] = "0"


def test_every_operation_conforms_to_the_spec(live: Daemon) -> None:
    status, spec = http(live.base, "GET", "/openapi.json")
    assert status == 200
    schema = schemathesis.openapi.from_dict(spec)
    # Some tasks and a running worker, so generated ids and names sometimes hit something real.
    live.start_worker("w")
    live.create([{"id": f"t{i}", "worker": "w", "date": "2040-01-01", "job": "noop"} for i in range(3)])
    headers = {"Authorization": f"Bearer {live.token}"}
    failures: list[str] = []
    statuses: dict[int, int] = {}
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        name = operation.definition.raw.get("operationId", operation.label)
        if name in SKIP:
            continue
        tested += 1
        # Random ids and names find nothing; one more pass aims at a real task and worker.
        real = {k: v for k, v in {"id": "task:t1", "name": "w"}.items() if "{" + k + "}" in operation.path}
        passes = [(GenerationMode.POSITIVE, None), (GenerationMode.NEGATIVE, None)] + ([(GenerationMode.POSITIVE, real)] if real else [])
        for mode, path_parameters in passes:

            @settings(
                max_examples=EXAMPLES_FOR.get(name, EXAMPLES),
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
            def check(case: Any) -> None:
                _finite(case)
                response = case.call_and_validate(base_url=live.base, headers=headers, checks=CHECKS, timeout=30)
                statuses[response.status_code // 100] = statuses.get(response.status_code // 100, 0) + 1

            try:
                check()
            except Unsatisfiable:
                assert mode == GenerationMode.NEGATIVE  # nothing to make invalid (no parameters, no body)
            except Exception as exc:  # collect all operations' failures, then report them together
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert tested >= 18
    assert not failures, "\n\n".join(failures)
    assert statuses.get(2, 0) > 50 and statuses.get(4, 0) > 50, statuses
    # Nothing the fuzzing sent made the daemon fail inside.
    assert "Traceback" not in live.log()
    assert http(live.base, "GET", "/health")[0] == 200
    json.dumps(spec)  # the spec itself is plain JSON


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        # The four requests schemathesis found accepted although the spec forbade them.
        ("GET", "/tasks?status=", None, "status"),
        ("GET", "/workers/w/log?follow=AAA", None, "follow"),
        ("POST", "/tasks", {"_id": 5, "worker": "w", "date": "2040-01-01", "job": "noop"}, "_id"),
        ("POST", "/workers/w2", {"jobs": ""}, "jobs"),
        ("GET", "/tasks?limit=", None, "limit"),
        ("GET", "/tasks?from=2031-01-01&to=2030-01-01", None, "from"),
        ("POST", "/tasks", {"worker": "w", "date": "2040-01-01", "job": "noop", "timeout": 1e12}, "timeout"),
        ("POST", "/tasks", {"worker": "w", "cron": "0 0 30 2 *", "job": "noop"}, "cron"),
        ("POST", "/tasks", {"worker": "w", "date": "2040-01-01", "cron": "0 0 31 4 *", "job": "noop"}, "cron"),
    ],
)
def test_what_the_spec_forbids_is_refused_naming_the_field(live: Daemon, method: str, path: str, body: Any, field: str) -> None:
    status, reply = http(live.base, method, path, body, token=live.token)
    assert 400 <= status < 500 and status != 404, (status, reply)
    assert reply["field"] == field, reply
    assert reply["message"].startswith(field + ":"), reply


def test_a_null_id_means_a_new_one_as_the_spec_says(live: Daemon) -> None:
    status, reply = http(live.base, "POST", "/tasks", {"_id": None, "worker": "w", "date": "2040-01-01", "job": "noop"}, token=live.token)
    assert status == 201 and reply["id"].startswith("task:"), reply
    spec = http(live.base, "GET", "/openapi.json")[1]
    assert {"type": "null"} in spec["components"]["schemas"]["TaskInput"]["properties"]["_id"]["anyOf"]
