"""A bus that drops what fault rules say: ``bus`` rules and the messages of a compute host
a ``host_down`` rule holds down.

It wraps the cloud's real bus (``onestack.bus.factory.make_bus``) and changes nothing while
no rule exists. A dropped cast or fanout is lost silently (as one sent to a host that never
reads its queue again); a dropped call fails at once with ``BusTimeout``, what its caller
would see after the timeout.
"""

from __future__ import annotations

import logging
from typing import Any

from onestack.bus.base import Bus, BusTimeout, NotificationHandler
from onestack.faults.rules import FaultTable

LOG = logging.getLogger(__name__)

_HOST_TOPIC = "compute."


class FaultBus(Bus):
    """``inner`` with the fault rules of ``table`` applied to what is sent."""

    def __init__(self, inner: Bus, table: FaultTable) -> None:
        self.inner = inner
        self.table = table

    def _dropped(self, topic: str, method: str) -> bool:
        if not self.table.active:
            return False
        if topic.startswith(_HOST_TOPIC) and self.table.hosts_down([topic[len(_HOST_TOPIC):]]):
            LOG.warning("fault: compute host of %s is down; %s dropped", topic, method)
            return True
        rule = self.table.match_bus(topic, method)
        if rule is not None:
            LOG.warning("fault rule %s: %s %s dropped", rule.id, topic, method)
            return True
        return False

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def call(self, topic: str, method: str, *, timeout: float = 60.0,
                   **kwargs: Any) -> Any:
        if self._dropped(topic, method):
            raise BusTimeout(f"no reply to {method} on {topic} (dropped by a fault rule)")
        return await self.inner.call(topic, method, timeout=timeout, **kwargs)

    async def cast(self, topic: str, method: str, **kwargs: Any) -> None:
        if self._dropped(topic, method):
            return
        await self.inner.cast(topic, method, **kwargs)

    async def fanout(self, topic: str, method: str, **kwargs: Any) -> None:
        if self._dropped(topic, method):
            return
        await self.inner.fanout(topic, method, **kwargs)

    async def notify(self, event_type: str, payload: dict[str, Any]) -> None:
        await self.inner.notify(event_type, payload)

    async def serve(self, topic: str, endpoint: Any) -> None:
        await self.inner.serve(topic, endpoint)

    async def subscribe(self, handler: NotificationHandler) -> None:
        await self.inner.subscribe(handler)
