"""The bus contract, on the in-process bus and on RabbitMQ (ONESTACK_TEST_AMQP_URL)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from onestack.bus import RemoteError, make_bus
from onestack.bus.base import Bus, BusTimeout
from tests.conftest import IN_CI, amqp_vhost

URLS = ["memory://"]
if os.environ.get("ONESTACK_TEST_AMQP_URL"):
    URLS.append(os.environ["ONESTACK_TEST_AMQP_URL"])
elif IN_CI:
    URLS.append("amqp://guest:guest@127.0.0.1:5672/")


class Agent:
    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[Any] = []
        self.event = asyncio.Event()

    async def echo(self, value: Any) -> dict[str, Any]:
        return {"agent": self.name, "value": value}

    async def boom(self) -> None:
        raise ValueError("no such thing")

    async def record(self, value: Any) -> None:
        self.seen.append(value)
        self.event.set()

    async def slow(self) -> None:
        await asyncio.sleep(5)

    def _secret(self) -> str:
        return "never"


@pytest.fixture(scope="module")
def amqp_url() -> Iterator[str]:
    """The RabbitMQ URL moved to a virtual host of this module's own (deleted afterwards)."""
    if len(URLS) < 2:
        yield ""
        return
    with amqp_vhost(URLS[1]) as url:
        yield url


@pytest.fixture(params=URLS, ids=lambda u: u.split(":")[0])
async def bus(request: pytest.FixtureRequest, amqp_url: str) -> AsyncIterator[Bus]:
    b = make_bus(amqp_url if request.param.startswith("amqp") else request.param)
    await b.start()
    yield b
    await b.stop()


def _topic() -> str:
    return "test." + uuid.uuid4().hex[:8]


async def _wait(agent: Agent, count: int) -> None:
    for _ in range(200):
        if len(agent.seen) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{agent.name} saw {agent.seen}")


async def test_call_cast_and_errors(bus: Bus) -> None:
    topic = _topic()
    agent = Agent("a")
    await bus.serve(topic, agent)
    assert await bus.call(topic, "echo", value=[1, "x"]) == {"agent": "a", "value": [1, "x"]}
    with pytest.raises(RemoteError) as err:
        await bus.call(topic, "boom")
    assert err.value.kind == "ValueError"
    with pytest.raises(RemoteError):
        await bus.call(topic, "_secret")
    with pytest.raises(BusTimeout):
        await bus.call(topic, "slow", timeout=0.3)
    await bus.cast(topic, "record", value=7)
    await _wait(agent, 1)
    assert agent.seen == [7]


async def test_consumers_share_casts_and_all_get_fanout(bus: Bus) -> None:
    topic = _topic()
    a, b = Agent("a"), Agent("b")
    await bus.serve(topic, a)
    await bus.serve(topic, b)
    for i in range(6):
        await bus.cast(topic, "record", value=i)
    for _ in range(200):
        if len(a.seen) + len(b.seen) == 6:
            break
        await asyncio.sleep(0.02)
    assert sorted(a.seen + b.seen) == list(range(6))
    await bus.fanout(topic, "record", value="all")
    await _wait(a, len(a.seen) + 1 if "all" not in a.seen else 0)
    for _ in range(200):
        if "all" in a.seen and "all" in b.seen:
            break
        await asyncio.sleep(0.02)
    assert "all" in a.seen and "all" in b.seen


async def test_notifications(bus: Bus) -> None:
    got: list[tuple[str, dict[str, Any]]] = []

    async def handler(event: str, payload: dict[str, Any]) -> None:
        got.append((event, payload))

    await bus.subscribe(handler)
    await bus.notify("compute.instance.create.end", {"id": "x"})
    for _ in range(200):
        if got:
            break
        await asyncio.sleep(0.02)
    assert ("compute.instance.create.end", {"id": "x"}) in got


@pytest.mark.skipif(len(URLS) < 2, reason="needs RabbitMQ (ONESTACK_TEST_AMQP_URL)")
async def test_amqp_cast_waits_for_a_consumer_that_was_down(amqp_url: str) -> None:
    topic = _topic()
    producer = make_bus(amqp_url)
    await producer.start()
    await producer.cast(topic, "record", value="queued")  # nobody consumes yet
    await producer.stop()
    consumer = make_bus(amqp_url)
    await consumer.start()
    agent = Agent("late")
    await consumer.serve(topic, agent)
    try:
        await _wait(agent, 1)
        assert agent.seen == ["queued"]
    finally:
        await consumer.stop()
