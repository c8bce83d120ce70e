"""The bus contract: how services talk to agents on this host or any other.

Four verbs, all with JSON-serialisable keyword arguments:

* ``call(topic, method, **kwargs)`` — request/response with one consumer of ``topic``; the
  consumer's return value comes back, its exception comes back as ``RemoteError``; a missing
  answer within ``timeout`` raises ``BusTimeout``.
* ``cast(topic, method, **kwargs)`` — fire-and-forget to one consumer of ``topic``. Over
  RabbitMQ the message is persistent and waits in a durable queue until a consumer takes it,
  so an agent that was down still gets it on start.
* ``fanout(topic, method, **kwargs)`` — fire-and-forget to every consumer of ``topic``.
* ``notify(event_type, payload)`` — a notification for whoever listens (``subscribe``).

A consumer registers with ``serve(topic, endpoint)``: a message ``method`` runs
``await endpoint.method(**kwargs)`` (or the plain function). Topics are dotted names such as
``scheduler`` or ``compute.host1``. Implementations: ``memory.MemoryBus`` (one process, the
default of ``onestack up``) and ``amqp.AmqpBus`` (RabbitMQ, for many hosts); ``factory.make_bus``
chooses by URL.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import Any

NotificationHandler = Callable[[str, dict[str, Any]], Awaitable[None]]


class BusError(Exception):
    """Base of bus failures."""


class BusTimeout(BusError):
    """No reply arrived in time."""


class NoConsumer(BusError):
    """Nobody serves the topic (in-process bus only; RabbitMQ queues the message)."""


class RemoteError(BusError):
    """The consumer raised; ``kind`` is its exception class name."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class Bus(abc.ABC):
    """The bus contract (see the module docstring)."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect (no-op in process)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop consuming and disconnect; in-flight handlers finish first."""

    @abc.abstractmethod
    async def call(self, topic: str, method: str, *, timeout: float = 60.0,
                   **kwargs: Any) -> Any:
        """Invoke ``method`` on one consumer of ``topic`` and return its result."""

    @abc.abstractmethod
    async def cast(self, topic: str, method: str, **kwargs: Any) -> None:
        """Deliver ``method`` to one consumer of ``topic`` without waiting."""

    @abc.abstractmethod
    async def fanout(self, topic: str, method: str, **kwargs: Any) -> None:
        """Deliver ``method`` to every consumer of ``topic``."""

    @abc.abstractmethod
    async def notify(self, event_type: str, payload: dict[str, Any]) -> None:
        """Publish a notification."""

    @abc.abstractmethod
    async def serve(self, topic: str, endpoint: Any) -> None:
        """Consume ``topic`` (call/cast/fanout) with ``endpoint``'s coroutine methods."""

    @abc.abstractmethod
    async def subscribe(self, handler: NotificationHandler) -> None:
        """Receive every notification as ``await handler(event_type, payload)``."""


async def dispatch(endpoint: Any, method: str, kwargs: dict[str, Any]) -> Any:
    """Run ``endpoint.method(**kwargs)``; refuse private or unknown methods."""
    if method.startswith("_"):
        raise BusError(f"refusing private method {method!r}")
    fn = getattr(endpoint, method, None)
    if fn is None or not callable(fn):
        raise BusError(f"{type(endpoint).__name__} has no method {method!r}")
    result = fn(**kwargs)
    if hasattr(result, "__await__"):
        result = await result
    return result
