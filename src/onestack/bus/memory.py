"""In-process bus: the default of ``onestack up`` (one process, no broker).

Semantics match the RabbitMQ bus where it matters: arguments and results pass through JSON
(so nothing that would not cross a wire works here by accident), casts run as tasks that do
not block the sender, consumers of a topic take turns.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import Any

from onestack.bus.base import Bus, BusTimeout, NoConsumer, NotificationHandler, RemoteError
from onestack.bus.base import dispatch as _dispatch

LOG = logging.getLogger(__name__)


def _wire(value: Any) -> Any:
    return json.loads(json.dumps(value))


class MemoryBus(Bus):
    """One-process bus (see module docstring)."""

    def __init__(self) -> None:
        self._consumers: dict[str, list[Any]] = {}
        self._turn: dict[str, itertools.count[int]] = {}
        self._subscribers: list[NotificationHandler] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._consumers.clear()

    def _pick(self, topic: str) -> Any:
        consumers = self._consumers.get(topic)
        if not consumers:
            raise NoConsumer(f"no consumer for topic {topic!r}")
        n = next(self._turn.setdefault(topic, itertools.count()))
        return consumers[n % len(consumers)]

    async def _run(self, endpoint: Any, method: str, kwargs: dict[str, Any]) -> Any:
        try:
            return _wire(await _dispatch(endpoint, method, _wire(kwargs)))
        except RemoteError:
            raise
        except Exception as exc:  # noqa: BLE001 - crosses the bus as RemoteError
            raise RemoteError(type(exc).__name__, str(exc)) from exc

    def _background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            LOG.error("bus consumer failed: %s", task.exception())

    async def call(self, topic: str, method: str, *, timeout: float = 60.0,
                   **kwargs: Any) -> Any:
        endpoint = self._pick(topic)
        try:
            return await asyncio.wait_for(self._run(endpoint, method, kwargs), timeout)
        except TimeoutError as exc:
            raise BusTimeout(f"{topic}.{method} did not answer in {timeout}s") from exc

    async def cast(self, topic: str, method: str, **kwargs: Any) -> None:
        self._background(self._run(self._pick(topic), method, kwargs))

    async def fanout(self, topic: str, method: str, **kwargs: Any) -> None:
        for endpoint in list(self._consumers.get(topic, [])):
            self._background(self._run(endpoint, method, kwargs))

    async def notify(self, event_type: str, payload: dict[str, Any]) -> None:
        for handler in list(self._subscribers):
            self._background(handler(event_type, _wire(payload)))

    async def serve(self, topic: str, endpoint: Any) -> None:
        self._consumers.setdefault(topic, []).append(endpoint)

    async def subscribe(self, handler: NotificationHandler) -> None:
        self._subscribers.append(handler)
