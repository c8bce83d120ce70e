#!/usr/bin/env python3
"""Network control-plane benchmark: port creation over HTTP.

    .venv/bin/python bench/network_bench.py [--ports 1000] [--parallel 50] [--dir /tmp]

Starts ``onestack up`` on free ports (data dir under ``--dir``), creates a network with a
/20 subnet as admin (port quota lifted) and measures:

* sequential ``POST /v2.0/ports`` on one keep-alive connection (target >= 500/s), through
  a minimal blocking HTTP/1.1 client (``RawClient``): httpx spends about as much CPU per
  request as the server, so measuring through it would measure httpx;
* ``--parallel`` concurrent creates on one fresh subnet: no duplicate IP, no 5xx.

Prints one line per figure, writes ``bench/results/network.json`` and exits non-zero when a
target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Bench-Admin-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(data_dir: Path) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    from onestack.bootstrap import SERVICES

    ports = {name: free_port() for name in SERVICES}
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(ONESTACK_ADMIN_PASSWORD=PASSWORD, ONESTACK_BCRYPT_ROUNDS="4",
               ONESTACK_LOG_LEVEL="warning")
    for name, port in ports.items():
        env[f"ONESTACK_{name.upper()}_PORT"] = str(port)
    proc = subprocess.Popen([str(BIN / "onestack"), "up", "--data-dir", str(data_dir)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{ports['network']}/healthcheck").status_code == 200:
                return proc, ports
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("onestack did not start")


class RawClient:
    """A minimal blocking keep-alive HTTP/1.1 JSON client on one connection (40-70 us of
    CPU per request against httpx's ~700: the figure is the server's)."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb")
        self.extra = f"Host: {host}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else b""
        self.sock.sendall(f"{method} {path} HTTP/1.1\r\n{self.extra}Content-Type: "
                          f"application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                          .encode() + data)
        status = int(self.rfile.readline().split()[1])
        length = 0
        while (line := self.rfile.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        raw = self.rfile.read(length) if length else b""
        return status, (json.loads(raw) if raw else None)

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()


def token(identity_port: int) -> str:
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": PASSWORD}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
    r = httpx.post(f"http://127.0.0.1:{identity_port}/v3/auth/tokens", json=body)
    r.raise_for_status()
    return r.headers["X-Subject-Token"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ports", type=int, default=1000)
    ap.add_argument("--parallel", type=int, default=50)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="onestack-netbench-", dir=args.dir))
    proc, ports = start(work / "data")
    ok = True
    figures: dict[str, Any] = {"cpus": os.cpu_count(), "load": os.getloadavg()[0]}
    try:
        tok = token(ports["identity"])
        base = f"http://127.0.0.1:{ports['network']}/v2.0"
        client = httpx.Client(base_url=base, headers={"X-Auth-Token": tok}, timeout=60)
        project = client.get("/quotas/tenant").json()["tenant"]["tenant_id"]
        client.put(f"/quotas/{project}", json={"quota": {"port": -1}}).raise_for_status()
        net = client.post("/networks", json={"network": {"name": "bench"}}).json()["network"]
        client.post("/subnets", json={"subnet": {"network_id": net["id"],
                                                 "cidr": "10.128.0.0/20",
                                                 "ip_version": 4}}).raise_for_status()
        raw = RawClient("127.0.0.1", ports["network"], {"X-Auth-Token": tok})
        doc = {"port": {"network_id": net["id"]}}
        for _ in range(20):  # warm up
            status, body = raw.request("POST", "/v2.0/ports", doc)
            if status != 201:
                raise SystemExit(f"port create failed: {status} {body}")
        t0 = time.perf_counter()
        for _ in range(args.ports):
            status, body = raw.request("POST", "/v2.0/ports", doc)
            if status != 201 or not body["port"]["fixed_ips"]:
                raise SystemExit(f"port create failed: {status} {body}")
        elapsed = time.perf_counter() - t0
        raw.close()
        rate = args.ports / elapsed
        ok &= rate >= 500
        figures["sequential"] = {"ports": args.ports, "seconds": round(elapsed, 3),
                                 "ports_per_s": round(rate, 1)}
        print(f"sequential port create: {args.ports} in {elapsed:.2f}s = {rate:.0f}/s "
              f"(target >= 500/s) {'OK' if rate >= 500 else 'MISSED'}")

        net2 = client.post("/networks", json={"network": {"name": "race"}}).json()["network"]
        client.post("/subnets", json={"subnet": {"network_id": net2["id"],
                                                 "cidr": "10.129.0.0/24",
                                                 "ip_version": 4}}).raise_for_status()
        limits = httpx.Limits(max_connections=args.parallel)
        pclient = httpx.Client(base_url=base, headers={"X-Auth-Token": tok}, timeout=120,
                               limits=limits)

        def create(_i: int) -> tuple[int, str]:
            r = pclient.post("/ports", json={"port": {"network_id": net2["id"]}})
            ip = r.json()["port"]["fixed_ips"][0]["ip_address"] if r.status_code == 201 else ""
            return r.status_code, ip

        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            results = list(pool.map(create, range(args.parallel)))
        elapsed = time.perf_counter() - t0
        statuses = [s for s, _ in results]
        ips = [ip for s, ip in results if s == 201]
        dup = len(ips) - len(set(ips))
        errors = sum(1 for s in statuses if s >= 500)
        good = dup == 0 and errors == 0 and len(ips) == args.parallel
        ok &= good
        figures["parallel"] = {"creates": args.parallel, "created": len(ips),
                               "seconds": round(elapsed, 3), "duplicates": dup, "5xx": errors}
        print(f"{args.parallel} concurrent port creates on one subnet: {len(ips)} created in "
              f"{elapsed:.2f}s, duplicate IPs {dup}, 5xx {errors} {'OK' if good else 'FAILED'}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "network.json").write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
