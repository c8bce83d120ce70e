"""Health under load: version documents and health checks stay fast while many clients list
big server pages (issue 11, defect 8). ``bench/health_bench.py`` is the full measurement;
this is its bounded CI twin: 1,000 servers, 40 listing clients, a few seconds."""

from __future__ import annotations

import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningCloud, start_cloud

SERVERS = 1000
CLIENTS = 40
LOAD_SECONDS = 6.0


class _Conn:
    """A blocking keep-alive HTTP/1.1 connection (GET only) returning status and seconds."""

    def __init__(self, port: int, path: str, headers: dict[str, str] | None = None) -> None:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buf = b""

    def get(self) -> tuple[int, float]:
        t0 = time.perf_counter()
        self.sock.sendall(self.request)
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            assert chunk, "the server closed the connection"
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        parts, have = [rest], len(rest)
        while have < length:
            chunk = self.sock.recv(1 << 18)
            assert chunk, "the server closed the connection"
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        self.buf = data[length:]
        return int(head.split(b" ", 2)[1]), time.perf_counter() - t0

    def close(self) -> None:
        self.sock.close()


def _seed(cloud: RunningCloud, project_id: str, image_id: str, n: int) -> None:
    """Record ``n`` ACTIVE servers directly in the cloud's database (set-up, not under test)."""
    from sqlalchemy import update

    from onestack.common.context import RequestContext
    from onestack.compute.manager import ComputeManager
    from onestack.db.compute import Instance
    from onestack.db.engine import Database

    db = Database(f"sqlite:///{cloud.data_dir / 'onestack.db'}")
    try:
        m = ComputeManager(db)
        ctx = RequestContext(request_id="req-seed", user_id="seed", project_id=project_id,
                             roles=["admin"])
        spec = {"name": "load", "flavor": m.get_flavor(None, "42"), "image_ref": image_id,
                "metadata": {"purpose": "load"}, "tags": ["load"],
                "system_metadata": {"security_groups": ["default"]}}
        for _ in range(n // 500):
            m.create_instances(ctx, spec, 500, 500)
        with db.transaction() as s:
            s.execute(update(Instance).values(vm_state="active", task_state=None,
                                              power_state=1, host="load", node="load"))
    finally:
        db.dispose()


@pytest.fixture(scope="module")
def loaded_cloud() -> Iterator[tuple[RunningCloud, dict[str, str]]]:
    tmp = Path(tempfile.mkdtemp(prefix="onestack-health-"))
    cloud = start_cloud(tmp / "data")
    try:
        token = cloud.token()
        h = {"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.79"}
        pid = httpx.get(cloud.auth_url + "/auth/tokens", headers={
            "X-Auth-Token": token, "X-Subject-Token": token}).json()["token"]["project"]["id"]
        r = httpx.put(cloud.url("compute") + f"/v2.1/os-quota-sets/{pid}", headers=h,
                      json={"quota_set": {"instances": -1, "cores": -1, "ram": -1}})
        assert r.status_code == 200, r.text
        img = httpx.post(cloud.url("image") + "/v2/images", headers=h, json={
            "name": "load", "disk_format": "raw", "container_format": "bare"}).json()
        _seed(cloud, pid, img["id"], SERVERS)
        yield cloud, h
    finally:
        cloud.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _probe_under_load(cloud: RunningCloud, headers: dict[str, str]
                      ) -> dict[str, list[float]]:
    """Run the listing clients and time ``GET /`` of every service meanwhile."""
    stop = threading.Event()
    pages = [0]
    failures: list[str] = []

    def lister() -> None:
        try:
            conn = _Conn(cloud.ports["compute"], "/v2.1/servers/detail?limit=200", headers)
            while not stop.is_set():
                status, _ = conn.get()
                if status != 200:
                    failures.append(f"list answered {status}")
                    return
                pages[0] += 1
            conn.close()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            failures.append(repr(exc))

    listers = [threading.Thread(target=lister, daemon=True) for _ in range(CLIENTS)]
    for t in listers:
        t.start()
    services = ("identity", "image", "placement", "network", "compute")
    probes = {s: _Conn(cloud.ports[s], "/") for s in services}
    times: dict[str, list[float]] = {s: [] for s in services}
    try:
        time.sleep(1.0)  # every client has a page in flight
        deadline = time.monotonic() + LOAD_SECONDS
        while time.monotonic() < deadline:
            for s, conn in probes.items():
                status, dt = conn.get()
                assert status in (200, 300), (s, status)
                times[s].append(dt)
            time.sleep(0.02)
    finally:
        stop.set()
        for t in listers:
            t.join(60)
        for conn in probes.values():
            conn.close()
    assert not failures, failures[:3]
    assert pages[0] >= CLIENTS, f"only {pages[0]} pages listed: no load"
    return times


def test_version_documents_answer_fast_while_clients_list_big_pages(
        loaded_cloud: tuple[RunningCloud, dict[str, str]]) -> None:
    cloud, headers = loaded_cloud
    times = _probe_under_load(cloud, headers)
    # Before bulk pages left the loop and the start-up heap was frozen, these answered in
    # 0.5-1.5 s at the median; now in a few ms (p99 <= 100 ms in bench/health_bench.py).
    # Bounds with room for a busy CI machine.
    for service, ts in times.items():
        ts.sort()
        median = statistics.median(ts)
        p90 = ts[int(len(ts) * 0.9)]
        assert median < 0.1 and p90 < 0.3, (
            f"{service} GET / under load: median {median * 1000:.0f} ms, "
            f"p90 {p90 * 1000:.0f} ms over {len(ts)} probes")
