"""RabbitMQ bus (aio-pika), for clouds spread over many hosts.

Layout on the broker: a topic exchange ``onestack`` routes ``call``/``cast`` messages by
topic to a durable queue ``onestack.<topic>`` shared by that topic's consumers (they take
turns); messages are persistent, so a cast to an agent that is down waits for it. Replies use
RabbitMQ's direct reply-to. ``fanout`` uses the fanout exchange ``onestack.fanout.<topic>``
with one exclusive queue per consumer; notifications use the fanout exchange
``onestack.notifications``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)

from onestack.bus.base import Bus, BusError, BusTimeout, NotificationHandler, RemoteError
from onestack.bus.base import dispatch as _dispatch

LOG = logging.getLogger(__name__)
EXCHANGE = "onestack"
NOTIFICATIONS = "onestack.notifications"


class AmqpBus(Bus):
    """RabbitMQ implementation of the bus contract."""

    def __init__(self, url: str, prefetch: int = 32) -> None:
        self.url = url
        self.prefetch = prefetch
        self._conn: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._reply_queue: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._conn = await aio_pika.connect_robust(self.url)
        self._channel = await self._conn.channel()
        await self._channel.set_qos(prefetch_count=self.prefetch)
        self._exchange = await self._channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        self._reply_queue = await self._channel.get_queue("amq.rabbitmq.reply-to",
                                                          ensure=False)
        await self._reply_queue.consume(self._on_reply, no_ack=True)

    async def stop(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(BusError("bus stopped"))
        if self._conn is not None:
            await self._conn.close()
        self._conn = self._channel = self._exchange = None

    def _ch(self) -> AbstractChannel:
        if self._channel is None:
            raise BusError("bus not started")
        return self._channel

    # ------------------------------------------------------------------ producing
    @staticmethod
    def _body(method: str, kwargs: dict[str, Any]) -> bytes:
        return json.dumps({"method": method, "args": kwargs}).encode()

    async def call(self, topic: str, method: str, *, timeout: float = 60.0,
                   **kwargs: Any) -> Any:
        assert self._exchange is not None
        corr = uuid.uuid4().hex
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[corr] = fut
        try:
            await self._exchange.publish(
                aio_pika.Message(self._body(method, kwargs), correlation_id=corr,
                                 reply_to="amq.rabbitmq.reply-to",
                                 content_type="application/json",
                                 expiration=timeout),
                routing_key=topic, mandatory=False)
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError as exc:
            raise BusTimeout(f"{topic}.{method} did not answer in {timeout}s") from exc
        finally:
            self._pending.pop(corr, None)

    async def cast(self, topic: str, method: str, **kwargs: Any) -> None:
        assert self._exchange is not None
        await self._declare_topic_queue(topic)
        await self._exchange.publish(
            aio_pika.Message(self._body(method, kwargs), content_type="application/json",
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=topic)

    async def fanout(self, topic: str, method: str, **kwargs: Any) -> None:
        ex = await self._ch().declare_exchange(f"onestack.fanout.{topic}",
                                               aio_pika.ExchangeType.FANOUT, durable=True)
        await ex.publish(aio_pika.Message(self._body(method, kwargs),
                                          content_type="application/json"), routing_key="")

    async def notify(self, event_type: str, payload: dict[str, Any]) -> None:
        ex = await self._ch().declare_exchange(NOTIFICATIONS, aio_pika.ExchangeType.FANOUT,
                                               durable=True)
        body = json.dumps({"event_type": event_type, "payload": payload}).encode()
        await ex.publish(aio_pika.Message(body, content_type="application/json"),
                         routing_key="")

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        fut = self._pending.get(message.correlation_id or "")
        if fut is None or fut.done():
            return
        data = json.loads(message.body)
        if "error" in data:
            fut.set_exception(RemoteError(data["error"]["kind"], data["error"]["message"]))
        else:
            fut.set_result(data.get("result"))

    # ------------------------------------------------------------------ consuming
    async def _declare_topic_queue(self, topic: str) -> Any:
        assert self._exchange is not None
        queue = await self._ch().declare_queue(f"onestack.{topic}", durable=True)
        await queue.bind(self._exchange, routing_key=topic)
        return queue

    async def serve(self, topic: str, endpoint: Any) -> None:
        async def on_message(message: AbstractIncomingMessage) -> None:
            await self._handle(endpoint, message)

        queue = await self._declare_topic_queue(topic)
        await queue.consume(on_message)
        ex = await self._ch().declare_exchange(f"onestack.fanout.{topic}",
                                               aio_pika.ExchangeType.FANOUT, durable=True)
        fan = await self._ch().declare_queue(exclusive=True, auto_delete=True)
        await fan.bind(ex)
        await fan.consume(on_message)

    async def _handle(self, endpoint: Any, message: AbstractIncomingMessage) -> None:
        task = asyncio.get_running_loop().create_task(self._process(endpoint, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process(self, endpoint: Any, message: AbstractIncomingMessage) -> None:
        reply: dict[str, Any]
        try:
            data = json.loads(message.body)
            result = await _dispatch(endpoint, data["method"], data.get("args") or {})
            reply = {"result": result}
        except Exception as exc:  # noqa: BLE001 - crosses the bus as RemoteError
            if not message.reply_to:
                LOG.exception("bus consumer failed")
            reply = {"error": {"kind": type(exc).__name__, "message": str(exc)}}
        try:
            if message.reply_to:
                await self._ch().default_exchange.publish(
                    aio_pika.Message(json.dumps(reply).encode(),
                                     correlation_id=message.correlation_id,
                                     content_type="application/json"),
                    routing_key=message.reply_to)
        finally:
            await message.ack()

    async def subscribe(self, handler: NotificationHandler) -> None:
        ex = await self._ch().declare_exchange(NOTIFICATIONS, aio_pika.ExchangeType.FANOUT,
                                               durable=True)
        queue = await self._ch().declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(ex)

        async def on_message(message: AbstractIncomingMessage) -> None:
            async with message.process():
                data = json.loads(message.body)
                await handler(data["event_type"], data["payload"])

        await queue.consume(on_message)
