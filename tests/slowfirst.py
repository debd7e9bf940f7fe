"""Run the slowest test files first, so the last file to finish is a short one.

Why: ``make test`` spreads whole files over a few processes (``--dist loadfile``, each
file's shared daemons stay in one process). xdist hands files out in collection order,
so when a long end-to-end file happened to come last in the alphabet, one process worked
alone for minutes at the end while the others idled. Ordered longest first (the classic
LPT rule) the processes finish close together.

The weights are the seconds each file took in a measured run, kept in
``tests/durations.json``. A file not listed there (a new one) goes first: unknown is
treated as slow rather than risk it finishing last. To measure again::

    .venv/bin/pytest -n 3 --dist loadfile --record-durations tests/durations.json

The order changes nothing but when a file starts: every test still runs, and a file's
tests keep their own order.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

DURATIONS = Path(__file__).with_name("durations.json")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-durations",
        default=None,
        metavar="PATH",
        help="write each test file's total seconds (setup + call + teardown) to PATH as JSON",
    )


def _weights() -> dict[str, float]:
    try:
        data = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, (int, float))}


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0].rsplit("/", 1)[-1]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Stable sort by file weight, longest first; within a file the order is kept."""
    weights = _weights()
    unknown = max(weights.values(), default=0.0) + 1.0
    first_seen: dict[str, int] = {}
    for i, item in enumerate(items):
        first_seen.setdefault(_file_of(item.nodeid), i)
    items.sort(key=lambda item: (-weights.get(_file_of(item.nodeid), unknown), first_seen[_file_of(item.nodeid)]))


class _Recorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[_file_of(report.nodeid)] += report.duration

    def pytest_sessionfinish(self) -> None:
        rounded = {name: round(s, 1) for name, s in sorted(self.seconds.items(), key=lambda kv: -kv[1])}
        self.path.write_text(json.dumps(rounded, indent=1) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--record-durations")
    # Only the controlling process records (under xdist it sees every worker's reports).
    if path and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_Recorder(Path(path)), "slowfirst-recorder")
