#!/usr/bin/env python3
"""Compute control-plane benchmark on the fake hypervisor.

    .venv/bin/python bench/compute_bench.py [--boots 50] [--hosts 1000] [--seconds 20]
                                            [--concurrency 50] [--servers 10000]

Three figures, each against its own ``onestack up`` (free ports, temporary data dir):

1. ``POST /servers`` -> ACTIVE latency at concurrency 1 (median and p90 of ``--boots``),
   the status observed by polling ``GET /servers/{id}`` every millisecond; target <= 50 ms.
2. sustained boot-and-delete with ``--hosts`` fake hosts at ``--concurrency``: each worker
   creates a server, waits for ACTIVE (polling every ``--poll`` s), deletes it; completed
   cycles per second over ``--seconds``; target >= 100 servers/s (2 cores).
3. ``GET /servers/detail?limit=1000`` over ``--servers`` ACTIVE servers (recorded directly
   through the compute manager, then listed over HTTP): median of 10; target <= 300 ms.

Prints one line per figure, writes ``bench/results/compute.json`` and exits non-zero when a
target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
SERVICES = ["identity", "image", "placement", "network", "compute"]
PASSWORD = "Bench-Admin-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cloud:
    def __init__(self, hosts: int = 1) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="onestack-compute-bench-"))
        self.data = self.tmp / "data"
        self.ports = {s: free_port() for s in SERVICES}
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env.update({"ONESTACK_ADMIN_PASSWORD": PASSWORD, "ONESTACK_LOG_LEVEL": "error",
                    "ONESTACK_BCRYPT_ROUNDS": "4", "ONESTACK_COMPUTE_DRIVER": "fake"})
        for s, p in self.ports.items():
            env[f"ONESTACK_{s.upper()}_PORT"] = str(p)
        self.log = (self.tmp / "log").open("wb")
        self.proc = subprocess.Popen([str(BIN / "onestack"), "up", "--data-dir", str(self.data),
                                      "--fake-hosts", str(hosts)], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url("compute") + "/healthcheck", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError((self.tmp / "log").read_text())
            time.sleep(0.2)
        self.token = self._token()
        self.headers = {"X-Auth-Token": self.token,
                        "OpenStack-API-Version": "compute 2.79"}
        self.image = self._image()

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def _token(self) -> str:
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": PASSWORD}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
        r = httpx.post(self.url("identity") + "/v3/auth/tokens", json=body)
        return r.headers["X-Subject-Token"]

    def _image(self) -> str:
        h = {"X-Auth-Token": self.token}
        img = httpx.post(self.url("image") + "/v2/images", headers=h, json={
            "name": "bench", "disk_format": "raw", "container_format": "bare"}).json()
        httpx.put(self.url("image") + f"/v2/images/{img['id']}/file", content=b"x" * 4096,
                  headers={**h, "Content-Type": "application/octet-stream"})
        return str(img["id"])

    def project_id(self) -> str:
        r = httpx.get(self.url("identity") + "/v3/auth/tokens",
                      headers={"X-Auth-Token": self.token, "X-Subject-Token": self.token})
        return str(r.json()["token"]["project"]["id"])

    def unlimited_quota(self) -> None:
        pid = self.project_id()
        r = httpx.put(self.url("compute") + f"/v2.1/os-quota-sets/{pid}", headers=self.headers,
                      json={"quota_set": {"instances": -1, "cores": -1, "ram": -1}})
        r.raise_for_status()

    def cpu_seconds(self) -> float:
        """User + system CPU time of the cloud's main process (from /proc; Linux)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class RawClient:
    """A minimal keep-alive HTTP/1.1 JSON client (one connection; the bench's workers each
    own one). httpx spends more CPU per request than the server does, which would make the
    client the bottleneck of the throughput figure."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        data = json.dumps(body).encode() if body is not None else b""
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.extra}"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n")
        self.writer.write(head.encode() + data)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        raw = await self.reader.readexactly(length) if length else b""
        return status, (json.loads(raw) if raw else None)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def raw_boot_active(c: RawClient, cloud: Cloud, name: str,
                          poll: float) -> tuple[str, float]:
    t0 = time.perf_counter()
    status, doc = await c.request("POST", "/v2.1/servers", {"server": {
        "name": name, "imageRef": cloud.image, "flavorRef": "42", "networks": "none"}})
    if status != 202:
        raise RuntimeError(f"create answered {status}: {doc}")
    sid = doc["server"]["id"]
    while True:
        await asyncio.sleep(poll)
        _, doc = await c.request("GET", f"/v2.1/servers/{sid}")
        if doc["server"]["status"] == "ACTIVE":
            return sid, time.perf_counter() - t0
        if doc["server"]["status"] == "ERROR":
            raise RuntimeError(f"{sid} went to ERROR: {doc['server'].get('fault')}")


async def boot_active(c: httpx.AsyncClient, cloud: Cloud, name: str,
                      poll: float = 0.001) -> tuple[str, float]:
    t0 = time.perf_counter()
    r = await c.post("/v2.1/servers", json={"server": {
        "name": name, "imageRef": cloud.image, "flavorRef": "42", "networks": "none"}})
    r.raise_for_status()
    sid = r.json()["server"]["id"]
    while True:
        s = (await c.get(f"/v2.1/servers/{sid}")).json()["server"]
        if s["status"] == "ACTIVE":
            return sid, time.perf_counter() - t0
        if s["status"] == "ERROR":
            raise RuntimeError(f"{sid} went to ERROR: {s.get('fault')}")
        await asyncio.sleep(poll)


async def latency(cloud: Cloud, boots: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=cloud.url("compute"), headers=cloud.headers,
                                 timeout=60) as c:
        await boot_active(c, cloud, "warmup")
        times = []
        for i in range(boots):
            sid, dt = await boot_active(c, cloud, f"lat-{i}")
            times.append(dt)
            await c.delete(f"/v2.1/servers/{sid}")
            await asyncio.sleep(0.01)
    times.sort()
    return {"median_ms": statistics.median(times) * 1000,
            "p90_ms": times[int(len(times) * 0.9) - 1] * 1000}


async def throughput(cloud: Cloud, concurrency: int, seconds: float,
                     poll: float) -> dict[str, float]:
    done = 0
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done, errors
        c = RawClient("127.0.0.1", cloud.ports["compute"], cloud.headers)
        i = 0
        try:
            while time.perf_counter() < stop_at:
                try:
                    sid, _ = await raw_boot_active(c, cloud, f"tp-{w}-{i}", poll)
                    status, _ = await c.request("DELETE", f"/v2.1/servers/{sid}")
                    if status != 204:
                        raise RuntimeError(f"delete answered {status}")
                    done += 1
                except Exception:  # noqa: BLE001 - count and go on
                    errors += 1
                    await c.close()
                    c = RawClient("127.0.0.1", cloud.ports["compute"], cloud.headers)
                i += 1
        finally:
            await c.close()

    cpu0 = cloud.cpu_seconds()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - t0
    cpu = cloud.cpu_seconds() - cpu0
    return {"servers_per_s": done / elapsed, "cycles": done, "errors": errors,
            "seconds": elapsed, "server_cpu_ms_per_cycle": cpu / max(done, 1) * 1000}


def seed_servers(cloud: Cloud, n: int) -> None:
    """Record ``n`` ACTIVE servers directly (bench setup; the API path is measured above)."""
    sys.path.insert(0, str(ROOT / "src"))
    from sqlalchemy import update

    from onestack.common.context import RequestContext
    from onestack.compute.manager import ComputeManager
    from onestack.db.compute import Instance
    from onestack.db.engine import Database

    db = Database(f"sqlite:///{cloud.data / 'onestack.db'}")
    m = ComputeManager(db)
    ctx = RequestContext(request_id="req-bench", user_id="bench", project_id=cloud.project_id(),
                         roles=["admin"])
    spec = {"name": "list", "flavor": m.get_flavor(None, "42"), "image_ref": cloud.image,
            "metadata": {"purpose": "bench"}, "tags": ["bench"],
            "system_metadata": {"security_groups": ["default"]}}
    left = n
    while left > 0:
        batch = min(500, left)
        m.create_instances(ctx, spec, batch, batch)
        left -= batch
    with db.transaction() as s:
        s.execute(update(Instance).values(vm_state="active", task_state=None, power_state=1,
                                          host="bench-host", node="bench-host"))
    db.dispose()


def list_detail(cloud: Cloud) -> dict[str, float]:
    times = []
    with httpx.Client(base_url=cloud.url("compute"), headers=cloud.headers, timeout=60) as c:
        c.get("/v2.1/servers/detail?limit=1000")
        for _ in range(10):
            t0 = time.perf_counter()
            r = c.get("/v2.1/servers/detail?limit=1000")
            times.append(time.perf_counter() - t0)
            assert len(r.json()["servers"]) == 1000
    return {"median_ms": statistics.median(times) * 1000}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--boots", type=int, default=50)
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--servers", type=int, default=10000)
    p.add_argument("--poll", type=float, default=0.25,
                   help="status poll interval of the boot-and-delete workers (s)")
    p.add_argument("--only", choices=["latency", "throughput", "list"])
    args = p.parse_args()
    results: dict[str, Any] = {"cpus": os.cpu_count()}
    ok = True
    if args.only in (None, "latency"):
        cloud = Cloud(1)
        try:
            res = asyncio.run(latency(cloud, args.boots))
        finally:
            cloud.stop()
        results["boot_latency"] = res
        hit = res["median_ms"] <= 50
        ok &= hit
        print(f"boot->ACTIVE c=1: median {res['median_ms']:.1f} ms, p90 {res['p90_ms']:.1f} ms "
              f"(target <= 50 ms: {'met' if hit else 'MISSED'})", flush=True)
    if args.only in (None, "throughput"):
        cloud = Cloud(args.hosts)
        try:
            cloud.unlimited_quota()
            res = asyncio.run(throughput(cloud, args.concurrency, args.seconds, args.poll))
        finally:
            cloud.stop()
        results["boot_delete"] = {**res, "hosts": args.hosts, "concurrency": args.concurrency}
        hit = res["servers_per_s"] >= 100
        ok &= hit
        print(f"boot+delete {args.hosts} hosts c={args.concurrency}: "
              f"{res['servers_per_s']:.1f} servers/s ({res['cycles']} in {res['seconds']:.1f}s, "
              f"{res['errors']} errors; server CPU {res['server_cpu_ms_per_cycle']:.1f} ms "
              f"per boot+delete) (target >= 100/s: {'met' if hit else 'MISSED'})",
              flush=True)
    if args.only in (None, "list"):
        cloud = Cloud(1)
        try:
            cloud.unlimited_quota()
            seed_servers(cloud, args.servers)
            res = list_detail(cloud)
        finally:
            cloud.stop()
        results["list_detail"] = {**res, "servers": args.servers}
        hit = res["median_ms"] <= 300
        ok &= hit
        print(f"GET /servers/detail?limit=1000 over {args.servers}: median "
              f"{res['median_ms']:.1f} ms (target <= 300 ms: {'met' if hit else 'MISSED'})",
              flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "compute.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
