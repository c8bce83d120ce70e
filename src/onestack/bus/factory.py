"""The bus a URL names (the composition root's choice of implementation)."""

from __future__ import annotations

from onestack.bus.base import Bus, BusError


def make_bus(url: str) -> Bus:
    """``memory://`` or ``amqp://user:pass@host:5672/vhost``."""
    if url.startswith("memory:"):
        from onestack.bus.memory import MemoryBus

        return MemoryBus()
    if url.startswith(("amqp:", "amqps:")):
        from onestack.bus.amqp import AmqpBus

        return AmqpBus(url)
    raise BusError(f"unsupported bus URL {url!r}")
