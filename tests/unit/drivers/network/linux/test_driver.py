"""The Linux data plane's ``wait_plugged`` (the in-process ``network-vif-plugged``)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from onestack.drivers.network.linux import driver as driver_module
from onestack.drivers.network.linux.driver import LinuxDriver

PORT = "6a4fbc5f-3d5e-4a7e-9d55-0c3b7e6f2a10"


def _driver() -> LinuxDriver:
    return LinuxDriver(SimpleNamespace(host="h1"), host=object(),  # type: ignore[arg-type]
                       components=[])


def test_a_wait_for_a_port_deleted_meanwhile_ends_at_once() -> None:
    driver = _driver()
    out: list[tuple[bool, float]] = []

    def wait() -> None:
        started = time.monotonic()
        out.append((driver.wait_plugged([PORT], 30.0), time.monotonic() - started))

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.2)
    driver.port_deleted({"id": PORT, "network_id": "n1"})
    waiter.join(5.0)
    assert not waiter.is_alive()
    (plugged, took), = out
    assert plugged is False and took < 5.0
    # A port deleted before the wait starts: no wait at all; other ports still time out.
    assert driver.wait_plugged([PORT], 30.0) is False
    started = time.monotonic()
    assert driver.wait_plugged(["another"], 0.3) is False
    assert time.monotonic() - started >= 0.3


def test_deleted_ports_are_remembered_in_bounded_number(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver_module, "DELETED_KEPT", 3)
    driver = _driver()
    for i in range(5):
        driver.port_deleted({"id": f"p{i}", "network_id": "n1"})
    started = time.monotonic()
    assert driver.wait_plugged(["p4"], 30.0) is False  # remembered: at once
    assert driver.wait_plugged(["p2"], 30.0) is False
    assert time.monotonic() - started < 5.0
    started = time.monotonic()
    assert driver.wait_plugged(["p0"], 0.3) is False  # forgotten: its timeout
    assert time.monotonic() - started >= 0.3
