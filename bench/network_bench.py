#!/usr/bin/env python3
"""Network control-plane benchmark: port creation over HTTP.

    .venv/bin/python bench/network_bench.py [--ports 1000] [--parallel 50] [--dir /tmp]
                                            [--network-driver noop|linux]

Starts ``onestack up`` on free ports (data dir under ``--dir``), creates a network with a
/20 subnet as admin (port quota lifted) and measures:

* sequential ``POST /v2.0/ports`` on one keep-alive connection (target >= 500/s), through
  a minimal blocking HTTP/1.1 client (``RawClient``): httpx spends about as much CPU per
  request as the server, so measuring through it would measure httpx;
* ``--parallel`` concurrent creates on one fresh subnet: no duplicate IP, no 5xx.

With ``--network-driver linux`` (root) the whole benchmark, cloud included, runs in a network
namespace made for it, with the Linux data plane converging every port (bridge, DHCP hosts
file and dnsmasq reload, firewall) while they are created; the target is then >= 1,000/s.
Its namespace and everything the data plane made are removed at the end.

Prints one line per figure, writes ``bench/results/network[-linux].json`` and exits non-zero
when a target is missed.
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


def enter_namespace() -> str:
    """Make a namespace (loopback up) and move this process's only thread into it: the cloud
    and every client thread started afterwards live there."""
    import ctypes
    import uuid

    name = f"netbench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, 0x40000000) != 0:
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)
    return name


def leave_namespace(name: str, data_dir: Path) -> None:
    """Remove the bench's namespace and what the cloud's data plane made (its DHCP and router
    namespaces and the dnsmasq servers whose command lines name the data dir)."""
    state = data_dir / "dataplane" / "namespaces.json"
    made = json.loads(state.read_text()) if state.exists() else []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"dnsmasq" in cmdline and os.fsencode(data_dir) in cmdline:
                os.kill(int(proc.name), signal.SIGKILL)
    for ns in [*made, name]:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)


def start(data_dir: Path, driver: str = "noop") -> tuple[subprocess.Popen[bytes],
                                                          dict[str, int]]:
    from onestack.config import SERVICE_PORTS

    # Every listener on a free port (metadata, console and dashboard too): a cloud already
    # on a default port must not stop this one.
    ports = {name: free_port() for name in SERVICE_PORTS}
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(ONESTACK_ADMIN_PASSWORD=PASSWORD, ONESTACK_BCRYPT_ROUNDS="4",
               ONESTACK_COMPUTE_DRIVER="fake",
               ONESTACK_LOG_LEVEL="warning", ONESTACK_NETWORK_DRIVER=driver)
    for name, port in ports.items():
        env[f"ONESTACK_{name.upper()}_PORT"] = str(port)
    log = os.environ.get("ONESTACK_BENCH_LOG")  # where the cloud's output goes (debugging)
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child's
    proc = subprocess.Popen([str(BIN / "onestack"), "up", "--data-dir", str(data_dir)],
                            env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{ports['network']}/healthcheck").status_code == 200:
                return proc, ports
        except httpx.HTTPError:
            time.sleep(0.1)
    status = proc.poll()
    proc.kill()
    raise SystemExit("onestack did not start" + (
        f" (it exited with {status}; ONESTACK_BENCH_LOG=FILE keeps its output)"
        if status is not None else " within 60 s"))


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


def wait_dhcp_hosts(data_dir: Path, net_id: str, count: int) -> float | None:
    """Seconds until the network's dnsmasq hosts file lists ``count`` ports (None: 60 s)."""
    hosts = data_dir / "dataplane" / "dhcp" / net_id / "host"
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 60:
        try:
            if len(hosts.read_text().splitlines()) >= count:
                return round(time.perf_counter() - t0, 3)
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ports", type=int, default=1000)
    ap.add_argument("--parallel", type=int, default=50)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--network-driver", choices=["noop", "linux"], default="noop")
    args = ap.parse_args()
    linux = args.network_driver == "linux"
    target = 1000 if linux else 500
    work = Path(tempfile.mkdtemp(prefix="onestack-netbench-", dir=args.dir))
    netns = enter_namespace() if linux else None
    try:
        proc, ports = start(work / "data", args.network_driver)
    except SystemExit:
        if netns is not None:
            leave_namespace(netns, work / "data")
        shutil.rmtree(work, ignore_errors=True)
        raise
    ok = True
    figures: dict[str, Any] = {"cpus": os.cpu_count(), "load": os.getloadavg()[0],
                               "network_driver": args.network_driver}
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
        ok &= rate >= target
        figures["sequential"] = {"ports": args.ports, "seconds": round(elapsed, 3),
                                 "ports_per_s": round(rate, 1)}
        print(f"sequential port create ({args.network_driver} data plane): {args.ports} in "
              f"{elapsed:.2f}s = {rate:.0f}/s (target >= {target}/s) "
              f"{'OK' if rate >= target else 'MISSED'}")
        if linux:
            converged = wait_dhcp_hosts(work / "data", net["id"], args.ports + 20)
            figures["dhcp_hosts_after_s"] = converged
            print(f"all {args.ports + 20} ports in dnsmasq's hosts file "
                  f"{converged:.2f}s after the last create" if converged is not None
                  else "dnsmasq's hosts file did not get every port within 60 s")
            ok &= converged is not None

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
        if netns is not None:
            leave_namespace(netns, work / "data")
        shutil.rmtree(work, ignore_errors=True)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    name = "network-linux.json" if linux else "network.json"
    (out / name).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
