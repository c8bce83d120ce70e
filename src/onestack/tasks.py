"""Small helpers for the asyncio tasks a service runs beside its work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

LOG = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has finished; its cancellation is not
    raised."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class BackgroundWork:
    """Work a service starts after answering and does not await (the storage half of a
    volume operation, say): each future stays referenced until it is done (the event loop
    keeps only weak references to tasks), and a failure is logged, never lost silently."""

    def __init__(self, what: str) -> None:
        #: Names the work in the log line of a failure.
        self.what = what
        self._running: set[asyncio.Future[Any]] = set()

    def track(self, fut: asyncio.Future[Any]) -> None:
        """Keep ``fut`` until it is done; log its exception, if any."""
        self._running.add(fut)

        def done(f: asyncio.Future[Any]) -> None:
            self._running.discard(f)
            if not f.cancelled() and f.exception() is not None:
                LOG.error("%s failed", self.what, exc_info=f.exception())
        fut.add_done_callback(done)
