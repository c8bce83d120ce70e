"""A small JSON client for functional tests: one service's base URL, a token and an optional
compute microversion, plus waiting for a server (or any condition) to settle."""

from __future__ import annotations

import time
from typing import Any

import httpx


def until(fn: Any, timeout: float = 30) -> Any:
    """``fn()``'s first truthy result, polled every 0.1 s (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        out = fn()
        if out:
            return out
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


class Http:
    """Requests against one base URL with one token (and a compute microversion)."""

    def __init__(self, base: str, token: str, version: str | None = None) -> None:
        self.base = base
        self.headers = {"X-Auth-Token": token}
        if version:
            self.headers["OpenStack-API-Version"] = f"compute {version}"
        self.http = httpx.Client(timeout=30)

    def __call__(self, method: str, path: str, body: Any = None,
                 **headers: str) -> httpx.Response:
        return self.http.request(method, self.base + path, json=body,
                                 headers={**self.headers, **headers})

    def wait(self, sid: str, status: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            s = self("GET", f"/servers/{sid}").json()["server"]
            if s["status"] == status and s["OS-EXT-STS:task_state"] is None:
                return dict(s)
            assert time.monotonic() < deadline, f"{s['status']}/{s['OS-EXT-STS:task_state']}"
            time.sleep(0.05)
