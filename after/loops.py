"""The one wrapper every background loop runs under (decisions in :mod:`after.outage`).

:meth:`Loops.run` repeats a loop's step for ever. A step that raises (any error of the
store: unreachable, 401, 403, 404, 5xx, a malformed answer; or a bug) never ends the
loop: the cause is logged when it appears or changes (not at each retry), the step is
tried again with backoff, what can be repaired is (a deleted ``_design/after`` is written
again), and recovery is logged once. The states are what ``/health`` and ``/metrics``
show; ``on_change`` hooks hear of each failure that is logged and each recovery (the
scheduler reloads its window then; a worker tells its daemon).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from after import outage, provision
from after.errors import AfterError
from after.outage import Log, LoopState, Repair
from after.store import Store

log = logging.getLogger("after.loops")


class Loops:
    """The state of every background loop of this process, by name."""

    def __init__(self, store: Store | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.states: dict[str, LoopState] = {}
        #: Called with a loop's state when a failure is logged and when it recovers.
        self.on_change: list[Callable[[LoopState], None]] = []
        #: Set (and replaced) when a loop recovers: the others waiting out a backoff try at once.
        self._recovered = asyncio.Event()

    def state(self, name: str) -> LoopState:
        return self.states.get(name) or LoopState(name)

    def failing(self) -> list[LoopState]:
        return [s for s in self.states.values() if s.failing]

    def reasons(self) -> list[str]:
        now = self.clock()
        return [outage.reason(s, now) for s in self.failing()]

    async def failure(self, name: str, exc: BaseException, *, base: float = 0.5, cap: float = 10.0) -> float:
        """Record a failed step of loop ``name``; log it if its cause is new; repair what can
        be. Returns how long to wait before the next try."""
        session_valid = None
        if outage.needs_session_check(exc) and self.store is not None:
            session_valid = await self.store.session_valid()
        cause = outage.classify(exc, session_valid=session_valid)
        message = exc.message if isinstance(exc, AfterError) else f"{type(exc).__name__}: {exc}"
        state, what = outage.failed(self.state(name), cause, message, self.clock(), base=base, cap=cap)
        self.states[name] = state
        if what is Log.FAILING:
            log.warning(
                "%s loop: %s (%s); retrying with backoff up to %gs",
                name,
                cause,
                message,
                cap,
                exc_info=None if isinstance(exc, AfterError) else exc,
            )
            self._changed(state)
        if outage.repair(cause) is Repair.DESIGN and self.store is not None:
            try:
                await provision.ensure_design(self.store)
            except Exception as err:  # the next failure says why; the cause is logged already
                log.debug("%s loop: cannot write the design document yet: %s", name, err)
            else:
                log.warning("%s loop: the design document _design/after was missing: written again", name)
                return 0.0
        return state.delay

    def success(self, name: str) -> None:
        old = self.state(name)
        state, what = outage.succeeded(old)
        self.states[name] = state
        if what is Log.RECOVERED:
            log.info("%s loop works again after %.0fs of %s", name, self.clock() - (old.since or self.clock()), old.cause)
            self._changed(state)
            self.wake()

    def wake(self) -> None:
        """The store worked for someone (a loop recovered, a worker wrote an outcome): the
        loops waiting out a backoff try again now rather than up to ``cap`` later."""
        if any(s.failing for s in self.states.values()):
            self._recovered.set()
            self._recovered = asyncio.Event()

    def _changed(self, state: LoopState) -> None:
        for hook in self.on_change:
            try:
                hook(state)
            except Exception:
                log.exception("loop state hook failed")

    async def run(
        self,
        name: str,
        step: Callable[[], Awaitable[Any]],
        *,
        pace: Callable[[], Awaitable[Any]] | None = None,
        base: float = 0.5,
        cap: float = 10.0,
        once: bool = False,
    ) -> None:
        """Run ``step`` for ever, awaiting ``pace`` before each try after a success (and
        before the first); after a failure, the backoff instead (cut short when another loop
        recovers: the store may be back). With ``once``, return after the first step that works."""
        delay: float | None = None
        while True:
            if delay is not None:
                recovered = self._recovered
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await recovered.wait()
            elif pace is not None:
                await pace()
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = await self.failure(name, exc, base=base, cap=cap)
                continue
            delay = None
            self.success(name)
            if once:
                return
