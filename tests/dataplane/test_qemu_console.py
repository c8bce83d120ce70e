"""Issue 5 remote console: ``openstack console url show`` on a real QEMU guest, then the
console URL's WebSocket through the console proxy to QEMU's own VNC server (loopback).

The test reads QEMU's RFB banner and completes the handshake up to ``ServerInit`` (what
Tempest's ``test_novnc`` checks), checks a tampered token is refused, and that after the
guest restarts (new QEMU process, possibly another VNC port) a new URL works. Root only,
like the other data-plane tests; everything is cleaned up.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conftest import RunningCloud, free_port, start_cloud
from tests.dataplane.test_qemu_cli import (
    CLI,
    GUEST_FLAVOR,
    GUEST_IMAGE,
    Guests,
    _cleanup_host,
    _qemu_pids,
)
from tests.dataplane.test_qemu_cli import pytestmark as _dataplane_marks

pytestmark = _dataplane_marks


@pytest.fixture(scope="module")
def console_cloud() -> Iterator[tuple[RunningCloud, Path]]:
    from onestack.guestimage import default_cache_dir

    tmp = Path(tempfile.mkdtemp(prefix="onestack-qconsole-"))
    data_dir = tmp / "data"
    env = {"ONESTACK_GUEST_IMAGE_DIR": str(default_cache_dir()),
           "ONESTACK_METADATA_PORT": str(free_port()),
           "ONESTACK_CONSOLE_PORT": str(free_port()),
           "ONESTACK_LOG_LEVEL": "info"}
    cloud = None
    try:
        cloud = start_cloud(data_dir, env=env, wait=600, args=["--compute-driver", "qemu"])
        yield cloud, data_dir
    finally:
        if cloud is not None:
            cloud.stop()
        _cleanup_host(data_dir)
        shutil.rmtree(tmp, ignore_errors=True)


def _ws_url(console_url: str) -> str:
    """The WebSocket noVNC opens for a console URL (``path`` holds ``?token=…``)."""
    parts = urlsplit(console_url)
    path = parse_qs(parts.query)["path"][0]
    return f"ws://{parts.netloc}/{path.lstrip('/')}"


async def _rfb(url: str) -> tuple[bytes, bytes]:
    """Banner and ServerInit through the proxy (RFB 3.8, security None, like Tempest)."""
    async with connect(url, subprotocols=["binary"], open_timeout=20) as ws:
        assert ws.subprotocol == "binary"
        banner = await asyncio.wait_for(ws.recv(), 20)
        assert isinstance(banner, bytes)
        await ws.send(b"RFB 003.008\n")
        types = await asyncio.wait_for(ws.recv(), 20)
        assert 1 in types[1:1 + types[0]], types  # QEMU without a password: None
        await ws.send(b"\x01")
        assert await asyncio.wait_for(ws.recv(), 20) == b"\x00\x00\x00\x00"
        await ws.send(b"\x01")  # shared
        init = await asyncio.wait_for(ws.recv(), 20)
        assert len(init) == 24 + struct.unpack(">I", init[20:24])[0], init
        return bytes(banner), bytes(init)


def test_console_url_reaches_qemu_vnc(console_cloud: Any) -> None:
    cloud, data_dir = console_cloud
    cli = CLI(cloud)
    guests = Guests(data_dir)
    server = cli.json("server", "create", "--image", GUEST_IMAGE, "--flavor", GUEST_FLAVOR,
                      "--nic", "none", "vmc", "--wait")
    assert server["status"] == "ACTIVE", server
    uuid = server["id"]
    try:
        url = cli.json("console", "url", "show", "--novnc", "vmc")["url"]
        assert url.startswith("http://127.0.0.1:") and "vnc_lite.html" in url, url
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200 and "noVNC" in page.text

        banner, init = asyncio.run(_rfb(_ws_url(url)))
        assert banner == b"RFB 003.008\n"
        assert b"QEMU" in init

        # The token is checked: a tampered one never reaches QEMU.
        async def tampered() -> int:
            with pytest.raises(InvalidStatus) as err:
                async with connect(_ws_url(url).replace("token=", "token=bad")):
                    pass
            return int(err.value.response.status_code)

        assert asyncio.run(tampered()) == 403

        # After a stop/start the guest is a new QEMU process: the old URL is refused
        # if its VNC port changed hands, and a new URL reaches the new process.
        cli.run("server", "stop", "vmc")
        cli.wait("vmc", "SHUTOFF")
        cli.run("server", "start", "vmc")
        cli.wait("vmc", "ACTIVE")
        assert guests.pid(uuid) is not None
        url2 = cli.json("console", "url", "show", "--novnc", "vmc")["url"]
        banner, _ = asyncio.run(_rfb(_ws_url(url2)))
        assert banner == b"RFB 003.008\n"
    finally:
        cli.run("server", "delete", "--wait", "vmc")
    assert _qemu_pids(data_dir) == []
