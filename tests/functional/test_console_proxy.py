"""The console proxy over real sockets: a ``websockets`` client, the proxy under uvicorn and
a fake VNC server (``fakevnc``, the test double of a guest's VNC server), all on loopback.
The end of the file drives the whole cloud (fake driver): console URL -> WebSocket -> RFB."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from onestack.console.proxy import ConsoleProxy
from onestack.console.tokens import ConsoleConnection, ConsoleTokenStore
from onestack.db.compute import Instance
from onestack.db.engine import Database
from onestack.db.migrate import upgrade
from onestack.drivers.hypervisor.fakevnc import BANNER, FakeVncServer
from tests.conftest import RunningCloud, free_port

UUID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


class Clock:
    now = 2_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'console.db'}")
    upgrade(database.engine)
    now = dt.datetime(2026, 1, 1)
    with database.transaction() as s:
        s.add(Instance(uuid=UUID, project_id="p", user_id="u", created_at=now,
                       updated_at=now))
    try:
        yield database
    finally:
        database.dispose()


class Harness:
    def __init__(self, store: ConsoleTokenStore, vnc: FakeVncServer, port: int,
                 clock: Clock, checks: list[ConsoleConnection]) -> None:
        self.store = store
        self.vnc = vnc
        self.port = port
        self.clock = clock
        self.checks = checks
        self.moved = False

    def url(self, query: str = "", path: str = "/") -> str:
        return f"ws://127.0.0.1:{self.port}{path}{'?' + query if query else ''}"

    def token(self, vnc_port: int | None = None) -> str:
        token, _ = self.store.create(UUID, "novnc", "127.0.0.1",
                                     vnc_port or self.vnc.port, "host1")
        return token


@pytest.fixture
async def proxy(db: Database) -> AsyncIterator[Harness]:
    clock = Clock()
    store = ConsoleTokenStore(db, ttl=60, clock=clock)
    vnc = FakeVncServer("test desktop")
    await vnc.start()
    checks: list[ConsoleConnection] = []
    harness: Harness

    async def check(conn: ConsoleConnection) -> bool:
        checks.append(conn)
        return not harness.moved

    app = ConsoleProxy(store, allowed_origins=["dash.example.org"], check=check,
                       connect_timeout=2)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "proxy did not start"
        await asyncio.sleep(0.01)
    harness = Harness(store, vnc, port, clock, checks)
    try:
        yield harness
    finally:
        server.should_exit = True
        await task
        await vnc.stop()


async def rfb_handshake(ws: Any) -> bytes:
    """The client side of RFB 3.8 with security None; returns ServerInit."""
    assert await ws.recv() == BANNER
    await ws.send(BANNER)
    assert await ws.recv() == b"\x01\x01"
    await ws.send(b"\x01")
    assert await ws.recv() == b"\x00\x00\x00\x00"
    await ws.send(b"\x01")
    init = await ws.recv()
    assert len(init) == 24 + struct.unpack(">I", init[20:24])[0]
    return bytes(init)


async def refused(url: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as err:
        async with connect(url, open_timeout=5, **kwargs):
            pass
    assert err.value.response.body in (b"", None)  # nothing a frame reader could misread
    return int(err.value.response.status_code)


async def test_relays_rfb_with_binary_subprotocol(proxy: Harness) -> None:
    token = proxy.token()
    async with connect(proxy.url(f"token={token}"), subprotocols=["binary"]) as ws:
        assert ws.subprotocol == "binary"
        init = await rfb_handshake(ws)
        assert init.endswith(b"test desktop")
    assert proxy.checks and proxy.checks[0].instance_uuid == UUID
    # The same URL works again until the token expires (noVNC reconnects).
    async with connect(proxy.url(f"token={token}")) as ws:
        assert ws.subprotocol is None
        assert await ws.recv() == BANNER


@pytest.mark.parametrize("form", ["path", "cookie", "path-cookie"])
async def test_token_forms_over_the_wire(proxy: Harness, form: str) -> None:
    token = proxy.token()
    if form == "path":  # the console URL's own query, sent as the WebSocket query
        url, headers = proxy.url(f"path=%3Ftoken%3D{token}"), {}
    elif form == "cookie":
        url, headers = proxy.url(path="/websockify"), {"Cookie": f"token={token}"}
    else:
        url, headers = proxy.url(path="/websockify"), {"Cookie": f"path=%3Ftoken%3D{token}"}
    async with connect(url, additional_headers=headers, subprotocols=["binary"]) as ws:
        assert await ws.recv() == BANNER


async def test_bad_tokens_are_refused(proxy: Harness) -> None:
    token = proxy.token()
    assert await refused(proxy.url(f"token=bad{token}")) == 403
    assert await refused(proxy.url("")) == 403
    assert await refused(proxy.url("token=" + "x" * 300)) == 403
    assert await refused(proxy.url("token=%00%ff")) == 403
    proxy.clock.now += 61
    assert await refused(proxy.url(f"token={token}")) == 403
    assert proxy.checks == []  # never got as far as the agent or the guest


async def test_origin_is_checked(proxy: Harness) -> None:
    token = proxy.token()
    url = proxy.url(f"token={token}")
    assert await refused(url, origin="http://evil.example.com") == 403  # type: ignore[arg-type]
    async with connect(url, origin=f"http://127.0.0.1:{proxy.port}") as ws:  # type: ignore[arg-type]
        assert await ws.recv() == BANNER
    async with connect(url, origin="https://dash.example.org") as ws:  # type: ignore[arg-type]
        assert await ws.recv() == BANNER


async def test_moved_console_unreachable_guest_and_base64(proxy: Harness) -> None:
    assert await refused(proxy.url(f"token={proxy.token()}"), subprotocols=["base64"]) == 400
    proxy.moved = True
    assert await refused(proxy.url(f"token={proxy.token()}")) == 403
    proxy.moved = False
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # bound, not listening: connection refused
        assert await refused(proxy.url(f"token={proxy.token(dead)}")) == 502


async def test_guest_side_close_ends_the_websocket(proxy: Harness) -> None:
    async with connect(proxy.url(f"token={proxy.token()}")) as ws:
        assert await ws.recv() == BANNER
        await proxy.vnc.stop()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)


async def test_http_pages(proxy: Harness) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{proxy.port}") as c:
        assert (await c.get("/healthcheck")).status_code == 200
        page = await c.get("/vnc_lite.html", params={"path": "?token=x"})
        assert page.status_code == 200 and "noVNC" in page.text and "<script" in page.text
        assert (await c.get("/nothing.js")).status_code == 404
        assert (await c.post("/vnc_lite.html")).status_code == 405


# ---------------------------------------------------------------- the whole cloud (fake driver)
def _boot(cloud: RunningCloud, headers: dict[str, str], name: str) -> str:
    base = cloud.url("compute") + "/v2.1"
    img_h = {"X-Auth-Token": headers["X-Auth-Token"]}
    img = httpx.post(cloud.url("image") + "/v2/images", headers=img_h, json={
        "name": f"{name}-img", "disk_format": "raw", "container_format": "bare"}).json()
    r = httpx.put(cloud.url("image") + f"/v2/images/{img['id']}/file", content=b"x" * 512,
                  headers={**img_h, "Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    r = httpx.post(base + "/servers", headers=headers, json={"server": {
        "name": name, "imageRef": img["id"], "flavorRef": "1", "networks": "none"}})
    assert r.status_code == 202, r.text
    sid = str(r.json()["server"]["id"])
    for _ in range(200):
        if httpx.get(f"{base}/servers/{sid}", headers=headers).json()["server"][
                "status"] == "ACTIVE":
            return sid
        time.sleep(0.05)
    raise AssertionError(f"{name} did not become ACTIVE")


def test_console_through_the_cloud(cloud: RunningCloud) -> None:
    admin = {"X-Auth-Token": cloud.token(), "OpenStack-API-Version": "compute 2.79"}
    base = cloud.url("compute") + "/v2.1"
    sid = _boot(cloud, admin, "console-vm")
    res = cloud.openstack("console", "url", "show", "--novnc", sid, "-f", "json")
    url = json.loads(res.stdout)["url"]
    assert "/vnc_lite.html?path=%3Ftoken%3D" in url
    token = url.split("%3D", 1)[1]
    page = httpx.get(url)
    assert page.status_code == 200 and "noVNC" in page.text

    async def handshake() -> bytes:
        ws_url = url.replace("http://", "ws://").split("/vnc_lite.html")[0]
        async with connect(f"{ws_url}/?token={token}", subprotocols=["binary"]) as ws:
            return await rfb_handshake(ws)

    assert b"onestack fake console" in asyncio.run(handshake())

    # The admin API shows what the token connects to; members may not.
    shown = httpx.get(f"{base}/os-console-auth-tokens/{token}", headers=admin)
    assert shown.status_code == 200, shown.text
    assert shown.json()["console"]["instance_uuid"] == sid
    assert shown.json()["console"]["host"] == "127.0.0.1"
    old = httpx.get(f"{base}/os-console-auth-tokens/{token}",
                    headers={**admin, "OpenStack-API-Version": "compute 2.30"})
    assert old.status_code == 401
    missing = httpx.get(f"{base}/os-console-auth-tokens/nope", headers=admin)
    assert missing.status_code == 404 and "itemNotFound" in missing.json()

    user, pw, project = cloud.make_member("console")
    member = {"X-Auth-Token": cloud.token(user, pw, project),
              "OpenStack-API-Version": "compute 2.79"}
    denied = httpx.get(f"{base}/os-console-auth-tokens/{token}", headers=member)
    assert denied.status_code == 403
    # Tenancy: another project's server is not found, and no token is made.
    r = httpx.post(f"{base}/servers/{sid}/remote-consoles", headers=member,
                   json={"remote_console": {"protocol": "vnc", "type": "novnc"}})
    assert r.status_code == 404 and "itemNotFound" in r.json()

    # Bad input: 4xx with Nova's fault body.
    for body, status in [({"remote_console": {"protocol": "vnc", "type": "spice-html5"}}, 400),
                         ({"remote_console": {"protocol": "spice", "type": "spice-html5"}},
                          400),
                         ({"remote_console": "x"}, 400), ({}, 400)]:
        r = httpx.post(f"{base}/servers/{sid}/remote-consoles", headers=admin, json=body)
        assert r.status_code == status and "badRequest" in r.json(), (body, r.text)
    r = httpx.post(f"{base}/servers/{sid}/remote-consoles",
                   headers={**admin, "OpenStack-API-Version": "compute 2.5"},
                   json={"remote_console": {"protocol": "vnc", "type": "novnc"}})
    assert r.status_code == 404
    r = httpx.post(f"{base}/servers/{sid}/action",
                   headers={**admin, "OpenStack-API-Version": "compute 2.1"},
                   json={"os-getVNCConsole": {"type": "novnc"}})
    assert r.status_code == 200 and "path=%3Ftoken%3D" in r.json()["console"]["url"]

    # A stopped server has no console: 409, and its old tokens no longer connect.
    r = httpx.post(f"{base}/servers/{sid}/action", headers=admin, json={"os-stop": None})
    assert r.status_code == 202
    for _ in range(200):
        if httpx.get(f"{base}/servers/{sid}", headers=admin).json()["server"][
                "status"] == "SHUTOFF":
            break
        time.sleep(0.05)
    r = httpx.post(f"{base}/servers/{sid}/remote-consoles", headers=admin,
                   json={"remote_console": {"protocol": "vnc", "type": "novnc"}})
    assert r.status_code == 409 and "conflictingRequest" in r.json()

    async def stale() -> int:
        ws_url = url.replace("http://", "ws://").split("/vnc_lite.html")[0]
        return await refused(f"{ws_url}/?token={token}")

    assert asyncio.run(stale()) == 403
    v231 = {**admin, "OpenStack-API-Version": "compute 2.31"}
    assert httpx.get(f"{base}/os-console-auth-tokens/{token}", headers=v231).status_code == 200
    r = httpx.delete(f"{base}/servers/{sid}", headers=admin)
    assert r.status_code == 204
    # Deleting the server drops its console tokens (Nova does the same).
    for _ in range(200):
        if httpx.get(f"{base}/servers/{sid}", headers=admin).status_code == 404:
            break
        time.sleep(0.05)
    assert httpx.get(f"{base}/os-console-auth-tokens/{token}", headers=v231).status_code == 404
