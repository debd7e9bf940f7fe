"""A remote job of the dependency tests (``python -m after.client --jobs remotedepjobs``):
only ``after.client`` is imported, as on a worker host."""

from __future__ import annotations

from typing import Any

from after.client import Context


def dependencies(ctx: Context, value: Any = None) -> dict[str, Any]:
    """What a remote job sees of the tasks its task waited for (``after``)."""
    return {"value": value, "dependencies": ctx.dependencies}
