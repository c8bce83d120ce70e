#!/usr/bin/env python3
"""Linux data-plane benchmark (root; everything inside namespaces made here).

    .venv/bin/python bench/dataplane_bench.py [--wired 40] [--resync 1000] [--seconds 3]
                                              [--lab]

The network manager (SQLite in a temporary directory) drives the Linux driver, whose root side
is a namespace made for the run, as ``onestack up --network-driver linux`` does:

* **port create -> wired (ACTIVE):** a compute port is created bound to this host, its tap is
  made at once and handed to the driver (what the QEMU driver does, here without the image
  work between the two), then the port's status is polled in the database until ACTIVE.
  Median and p95 over ``--wired`` ports (target median <= 50 ms); also the median from the
  hand-over to "wired" (``wait_plugged``, what a guest's start waits for).
* **guest-to-guest TCP throughput:** two "guests" (namespaces on veth pairs whose root ends are
  the ports' taps) on one network, the security group allowing TCP from its members, one TCP
  stream for ``--seconds``; the same between two namespaces joined by a plain veth pair, in the
  same run, three rounds alternating (medians). The ratio is the data plane's cost (target
  >= 0.8).
* **full resync on restart:** ``--resync`` compute ports with their taps converged, the driver
  stopped and a new one started on the same state: seconds until it has reconciled everything
  (target <= 10 s).
* ``--lab``: also runs the DevStack lab end to end (tests/dataplane/test_lab.py, QEMU under
  TCG) and reports its "boot -> floating IP answers ping and ssh" time (target <= 15 s).

Prints one line per figure, writes ``bench/results/dataplane.json``, exits non-zero when a
target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.netns import in_netns, namespace  # noqa: E402

from onestack.common.context import RequestContext  # noqa: E402
from onestack.config import Settings  # noqa: E402
from onestack.db.engine import Database  # noqa: E402
from onestack.db.migrate import upgrade  # noqa: E402
from onestack.drivers.network.base import DesiredState  # noqa: E402
from onestack.drivers.network.linux import names  # noqa: E402
from onestack.drivers.network.linux.driver import LinuxDriver, LinuxOptions  # noqa: E402
from onestack.drivers.network.linux.host import Host, missing_requirements  # noqa: E402
from onestack.network.api import build_policy  # noqa: E402
from onestack.network.manager import NetworkManager  # noqa: E402

HOST = "bench-host"


def ip(*args: str, ns: str | None = None) -> None:
    subprocess.run(["ip", *(["-n", ns] if ns else []), *args], check=True,
                   capture_output=True)


class Cloud:
    """The manager and the Linux driver over a scratch SQLite database."""

    def __init__(self, tmp: Path, root: str) -> None:
        self.tmp, self.root = tmp, root
        self.db = Database(f"sqlite:///{tmp / 'bench.db'}", pool_size=8)
        upgrade(self.db.engine)
        self.settings = Settings(data_dir=tmp, bcrypt_rounds=4, network_host=HOST)
        self.manager: NetworkManager = self._start()
        self.manager.ensure_defaults("admin-project", None)

    def _driver(self) -> LinuxDriver:
        opts = LinuxOptions(state_dir=self.tmp / "dataplane", host=HOST,
                            public_gateway_cidr="172.24.4.1/24", metadata_port=1,
                            metadata_secret="bench")
        return LinuxDriver(opts, host=Host(netns=self.root))

    def _start(self) -> NetworkManager:
        m = NetworkManager(self.db, self.settings, build_policy(None), driver=self._driver())
        return m

    @property
    def driver(self) -> LinuxDriver:
        return self.manager.driver  # type: ignore[return-value]

    def restart(self) -> float:
        """Stop the driver, start a new one on the same state; seconds to reconcile."""
        self.manager.stop_dataplane()
        self.manager = self._start()
        t0 = time.perf_counter()
        self.manager.start_dataplane()
        assert self.driver.wait_idle(120), "no convergence in 120 s"
        return time.perf_counter() - t0

    def close(self) -> None:
        self.driver.sync(DesiredState())
        self.driver.wait_idle(60)
        self.manager.stop_dataplane()
        self.db.dispose()


def _ctx() -> RequestContext:
    return RequestContext(user_id="u", project_id="bench", roles=["member", "reader"])


def _network(m: NetworkManager, cidr: str) -> tuple[dict[str, Any], dict[str, Any]]:
    net = m.create_networks(_ctx(), [{"name": f"net-{cidr}"}])[0]
    sub = m.create_subnets(_ctx(), [{"network_id": net["id"], "cidr": cidr,
                                     "ip_version": 4}])[0]
    return net, sub


def _status(m: NetworkManager, pid: str) -> str:
    return str(m.get_port(RequestContext.admin(), pid)["status"])


def bench_wired(cloud: Cloud, count: int) -> dict[str, Any]:
    m = cloud.manager
    net, _ = _network(m, "10.61.0.0/22")
    cloud.driver.wait_idle(30)
    latencies, plugged = [], []
    for i in range(count):
        t0 = time.perf_counter()
        port = m.create_port_for_device(_ctx(), net["id"], f"server-{i}", host=HOST)
        tap = names.tap(port["id"])
        ip("tuntap", "add", "dev", tap, "mode", "tap", ns=cloud.root)
        ip("link", "set", "dev", tap, "up", ns=cloud.root)
        t1 = time.perf_counter()
        cloud.driver.plug(port, tap)
        assert cloud.driver.wait_plugged([port["id"]], 10)
        plugged.append((time.perf_counter() - t1) * 1000)
        while _status(m, port["id"]) != "ACTIVE":
            if time.perf_counter() - t0 > 10:
                raise SystemExit(f"port {port['id']} not ACTIVE after 10 s")
            time.sleep(0.001)
        latencies.append((time.perf_counter() - t0) * 1000)
    latencies.sort()
    return {"ports": count, "median_ms": round(statistics.median(latencies), 1),
            "p95_ms": round(latencies[int(0.95 * (count - 1))], 1),
            "max_ms": round(latencies[-1], 1),
            "plug_to_wired_median_ms": round(statistics.median(plugged), 1)}


def _stream(server_ns: str, client_ns: str, addr: str, seconds: float) -> float:
    """Bytes per second of one TCP stream from ``client_ns`` to ``addr`` in ``server_ns``."""
    received = [0]
    ready = threading.Event()

    def serve() -> None:
        with in_netns(server_ns):
            srv = socket.socket()
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind((addr, 5201))
            srv.listen(1)
        ready.set()
        conn, _ = srv.accept()
        with conn:
            while chunk := conn.recv(1 << 20):
                received[0] += len(chunk)
        srv.close()

    thread = threading.Thread(target=serve)
    thread.start()
    ready.wait(10)
    buf = b"\0" * (1 << 20)
    with in_netns(client_ns):
        cli = socket.create_connection((addr, 5201), timeout=10)
    t0 = time.perf_counter()
    with cli:
        while time.perf_counter() - t0 < seconds:
            cli.sendall(buf)
    thread.join(30)
    return received[0] / (time.perf_counter() - t0)


def bench_throughput(cloud: Cloud, seconds: float) -> dict[str, Any]:
    m = cloud.manager
    net, _ = _network(m, "10.62.0.0/24")
    group = m.create_security_groups(_ctx(), [{"name": "bench-sg"}])[0]
    m.create_security_group_rules(_ctx(), [{
        "security_group_id": group["id"], "direction": "ingress", "ethertype": "IPv4",
        "protocol": "tcp", "remote_group_id": group["id"]}])
    guests = []
    for i in range(2):
        port = m.create_port_for_device(_ctx(), net["id"], f"tp-{i}", host=HOST,
                                        security_groups=[group["id"]])
        guests.append(port)
    with namespace("dpb-a") as ga, namespace("dpb-b") as gb:
        for port, gns in zip(guests, (ga, gb), strict=True):
            tap = names.tap(port["id"])
            ip("link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", gns,
               ns=cloud.root)
            ip("link", "set", "dev", tap, "up", ns=cloud.root)
            ip("link", "set", "dev", "eth0", "address", port["mac_address"], "mtu",
               str(net["mtu"]), "up", ns=gns)
            ip("addr", "add", port["fixed_ips"][0]["ip_address"] + "/24", "dev", "eth0",
               ns=gns)
            cloud.driver.plug(port, tap)
        assert cloud.driver.wait_idle(30)
        with namespace("dpv-a") as va, namespace("dpv-b") as vb:
            ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", vb,
               ns=va)
            ip("link", "set", "dev", "eth0", "mtu", str(net["mtu"]), "up", ns=va)
            ip("link", "set", "dev", "eth0", "mtu", str(net["mtu"]), "up", ns=vb)
            ip("addr", "add", "10.63.0.1/24", "dev", "eth0", ns=va)
            ip("addr", "add", "10.63.0.2/24", "dev", "eth0", ns=vb)
            bridged, plain = [], []
            for _ in range(3):  # alternating, so both see the same machine
                bridged.append(_stream(gb, ga, guests[1]["fixed_ips"][0]["ip_address"],
                                       seconds))
                plain.append(_stream(vb, va, "10.63.0.2", seconds))
    b, p = statistics.median(bridged), statistics.median(plain)
    return {"bridged_sg_MBps": round(b / 1e6, 1), "plain_veth_MBps": round(p / 1e6, 1),
            "ratio": round(b / p, 3), "seconds": seconds, "rounds": 3}


def bench_resync(cloud: Cloud, count: int) -> dict[str, Any]:
    m = cloud.manager
    m.update_quota(RequestContext.admin(), "bench", {"port": -1})
    net, _ = _network(m, "10.64.0.0/20")
    t0 = time.perf_counter()
    ports = m.create_ports(RequestContext.admin(), [
        {"network_id": net["id"], "project_id": "bench", "device_owner": "compute:nova",
         "device_id": f"rs-{i}", "binding:host_id": HOST} for i in range(count)])
    made = time.perf_counter() - t0
    batch = "\n".join(f"tuntap add dev {names.tap(p['id'])} mode tap" for p in ports)
    subprocess.run(["ip", "-n", cloud.root, "-batch", "-"], input=batch, text=True,
                   check=True)
    cloud.driver.sync(m.desired_state())
    assert cloud.driver.wait_idle(300)
    seconds = cloud.restart()
    active = sum(1 for p in m.list_ports(RequestContext.admin(), network_id=net["id"])
                 if p["status"] == "ACTIVE" and p["device_owner"] == "compute:nova")
    return {"ports": count, "seconds": round(seconds, 2), "active": active,
            "create_seconds": round(made, 2)}


def bench_lab() -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                          str(ROOT / "tests/dataplane/test_lab.py")], capture_output=True,
                         text=True, cwd=ROOT, check=False)
    found = re.search(r"boot -> floating IP answers ping and ssh: ([0-9.]+) s", out.stdout)
    return {"passed": out.returncode == 0,
            "boot_to_reachable_s": float(found.group(1)) if found else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wired", type=int, default=40)
    ap.add_argument("--resync", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--lab", action="store_true")
    args = ap.parse_args()
    if missing_requirements():
        raise SystemExit("needs " + ", ".join(missing_requirements()))
    figures: dict[str, Any] = {"cpus": os.cpu_count(), "load": os.getloadavg()[0]}
    ok = True
    with tempfile.TemporaryDirectory(prefix="onestack-dpbench-") as tmp, \
            namespace("dpbench") as root:
        cloud = Cloud(Path(tmp), root)
        cloud.manager.start_dataplane()
        try:
            w = figures["wired"] = bench_wired(cloud, args.wired)
            ok &= w["median_ms"] <= 50
            print(f"port create -> wired (ACTIVE): median {w['median_ms']} ms, p95 "
                  f"{w['p95_ms']} ms over {w['ports']} ports (target median <= 50 ms); "
                  f"tap handed over -> wired (what a guest's start waits for): median "
                  f"{w['plug_to_wired_median_ms']} ms")
            t = figures["throughput"] = bench_throughput(cloud, args.seconds)
            ok &= t["ratio"] >= 0.8
            print(f"guest-to-guest TCP: {t['bridged_sg_MBps']} MB/s through bridge + security "
                  f"groups, {t['plain_veth_MBps']} MB/s on a plain veth pair: ratio "
                  f"{t['ratio']} (target >= 0.8)")
            r = figures["resync"] = bench_resync(cloud, args.resync)
            ok &= r["seconds"] <= 10 and r["active"] == r["ports"]
            print(f"full resync of {r['ports']} ports on restart: {r['seconds']} s, "
                  f"{r['active']} ACTIVE (target <= 10 s)")
        finally:
            cloud.close()
    if args.lab:
        lab = figures["lab"] = bench_lab()
        ok &= bool(lab["passed"]) and (lab["boot_to_reachable_s"] or 1e9) <= 15
        print(f"DevStack lab: {'passed' if lab['passed'] else 'FAILED'}; boot -> floating IP "
              f"answers ping and ssh {lab['boot_to_reachable_s']} s (target <= 15 s)")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "dataplane.json").write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
