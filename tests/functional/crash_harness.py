"""Kill the whole cloud under load, restart it, and check that nothing was lost.

Used by ``test_crash_recovery.py`` (a few kills, in CI) and ``bench/crash_bench.py`` (as many
as asked). One ``onestack up`` (fake hypervisor, several hosts) runs in its own process
group; client threads boot and delete servers (with ports and without) and create ports and
networks; at a random moment the process group gets SIGKILL, the cloud is started again on
the same data directory and the load resumes. After the last restart and the reconcile
window the cloud must show:

* lost = 0: every server, port and network whose create was answered 2xx (and whose delete
  was not) exists;
* resurrected = 0: nothing whose delete was answered 204 is back;
* duplicates = 0: no two ports share a MAC address or an IP address on one network;
* stuck = 0: no server in BUILD or with a task state;
* usage drift = 0: placement's usages, the hypervisors' counters and the compute quota usage
  equal what the live servers hold, and the network quota usage the live ports.

Requests whose answer the kill cut off are "in doubt": either outcome is allowed for them.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import PortTaken, RunningCloud, start_cloud

FLAVOR = {"vcpus": 1, "ram": 512, "disk": 1}  # flavor "1" (m1.tiny)
ENV = {
    "ONESTACK_COMPUTE_HEARTBEAT_INTERVAL": "1",
    "ONESTACK_COMPUTE_RECONCILE_INTERVAL": "1",
    "ONESTACK_COMPUTE_RECOVER_AFTER": "2",
    "ONESTACK_COMPUTE_FAKE_DELAY": "0.05",
}


@dataclass
class Ledger:
    """What the clients were told (shared by the worker threads under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    servers: set[str] = field(default_factory=set)
    servers_deleted: set[str] = field(default_factory=set)
    servers_delete_doubt: set[str] = field(default_factory=set)
    ports: set[str] = field(default_factory=set)
    ports_deleted: set[str] = field(default_factory=set)
    ports_delete_doubt: set[str] = field(default_factory=set)
    networks: set[str] = field(default_factory=set)
    requests: int = 0
    in_doubt: int = 0
    errors: list[str] = field(default_factory=list)
    doubts: list[str] = field(default_factory=list)

    @property
    def acknowledged(self) -> int:
        return len(self.servers) + len(self.ports) + len(self.networks)


class Client:
    def __init__(self, cloud: RunningCloud, token: str) -> None:
        self.cloud = cloud
        self.http = httpx.Client(timeout=30, headers={"X-Auth-Token": token})

    def __call__(self, service: str, method: str, path: str, body: Any = None,
                 **headers: str) -> httpx.Response:
        return self.http.request(method, self.cloud.url(service) + path, json=body,
                                 headers=headers)


class CrashRun:
    """One cloud, its workload and its checks (see the module docstring)."""

    def __init__(self, root: Path, env: dict[str, str] | None = None, hosts: int = 3,
                 threads: int = 6, seed: int | None = None) -> None:
        self.root = root
        self.env = {**ENV, **(env or {})}
        self.hosts = hosts
        self.threads = threads
        self.rng = random.Random(seed)
        self.ledger = Ledger()
        self.cloud: RunningCloud | None = None
        self.kills = 0
        self.restart_seconds: list[float] = []
        self.log_excerpt: list[str] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        t0 = time.monotonic()
        ports = self.cloud.ports if self.cloud is not None else None
        for attempt in range(4):
            try:
                self.cloud = start_cloud(self.root / "data", ports=ports, env=self.env,
                                         args=["--fake-hosts", str(self.hosts)], wait=120)
                break
            except PortTaken:
                # Another process took one of our ports while we were down: the same
                # ports a few times, then new ones (clients here use the ports directly).
                if attempt == 3:
                    raise
                time.sleep(1)
                if attempt == 2:
                    ports = None
        self.restart_seconds.append(time.monotonic() - t0)

    def kill(self) -> None:
        """SIGKILL the cloud's whole process group (``start_cloud`` makes it a session)."""
        assert self.cloud is not None
        with_pg = self.cloud.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(with_pg, signal.SIGKILL)
        self.cloud.proc.wait(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the identity workers of the group too
            try:
                os.killpg(with_pg, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.kills += 1

    def stop(self) -> None:
        if self.cloud is not None:
            self.cloud.stop()

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        assert self.cloud is not None
        c = Client(self.cloud, self.cloud.token())
        self.token = self.cloud.token()
        r = c("identity", "GET", "/v3/auth/projects")
        self.project = next(p["id"] for p in r.json()["projects"] if p["name"] == "admin")
        r = c("compute", "PUT", f"/v2.1/os-quota-sets/{self.project}",
              {"quota_set": {"instances": -1, "cores": -1, "ram": -1}})
        assert r.status_code == 200, r.text
        r = c("network", "PUT", f"/v2.0/quotas/{self.project}",
              {"quota": {"port": -1, "network": -1, "subnet": -1}})
        assert r.status_code == 200, r.text
        img = c("image", "POST", "/v2/images", {"name": "crash", "disk_format": "raw",
                                                "container_format": "bare"}).json()
        r = c.http.put(self.cloud.url("image") + f"/v2/images/{img['id']}/file",
                       content=b"x" * 4096, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 204, r.text
        self.image = img["id"]
        net = c("network", "POST", "/v2.0/networks", {"network": {"name": "crash"}})
        assert net.status_code == 201, net.text
        self.net = net.json()["network"]["id"]
        sub = c("network", "POST", "/v2.0/subnets", {"subnet": {
            "network_id": self.net, "cidr": "10.99.0.0/16", "ip_version": 4}})
        assert sub.status_code == 201, sub.text
        self.base_memory = self._hypervisor_memory(c)  # what no server uses (reserved)

    @staticmethod
    def _hypervisor_memory(c: Client) -> int:
        hyp = c("compute", "GET", "/v2.1/os-hypervisors/detail").json()["hypervisors"]
        return sum(int(h["memory_mb_used"]) for h in hyp)

    # ------------------------------------------------------------------ workload
    def _one(self, c: Client, rng: random.Random) -> None:
        led = self.ledger
        op = rng.choices(["boot", "boot_port", "delete", "port", "port_delete", "network"],
                         [3, 3, 3, 2, 1, 1])[0]
        with led.lock:
            live = sorted(led.servers - led.servers_deleted - led.servers_delete_doubt)
            live_ports = sorted(led.ports - led.ports_deleted - led.ports_delete_doubt)
            led.requests += 1
        if op == "delete" and not live:
            op = "boot"
        if op == "port_delete" and not live_ports:
            op = "port"
        try:
            if op in ("boot", "boot_port"):
                nets: Any = [{"uuid": self.net}] if op == "boot_port" else "none"
                r = c("compute", "POST", "/v2.1/servers", {"server": {
                    "name": f"c-{uuid.uuid4().hex[:6]}", "imageRef": self.image,
                    "flavorRef": "1", "networks": nets}},
                    **{"OpenStack-API-Version": "compute 2.37"})
                if r.status_code == 202:
                    with led.lock:
                        led.servers.add(r.json()["server"]["id"])
                else:
                    self._unexpected(op, r)
            elif op == "delete":
                self._delete(c, op, "compute", "/v2.1/servers/", rng.choice(live),
                             led.servers_delete_doubt, led.servers_deleted, (404, 409))
            elif op == "port":
                r = c("network", "POST", "/v2.0/ports", {"port": {"network_id": self.net}})
                if r.status_code == 201:
                    with led.lock:
                        led.ports.add(r.json()["port"]["id"])
                else:
                    self._unexpected(op, r)
            elif op == "port_delete":
                self._delete(c, op, "network", "/v2.0/ports/", rng.choice(live_ports),
                             led.ports_delete_doubt, led.ports_deleted, ())
            else:
                r = c("network", "POST", "/v2.0/networks",
                      {"network": {"name": f"n-{uuid.uuid4().hex[:6]}"}})
                if r.status_code == 201:
                    with led.lock:
                        led.networks.add(r.json()["network"]["id"])
                else:
                    self._unexpected(op, r)
        except httpx.HTTPError as exc:
            with led.lock:
                led.in_doubt += 1  # the kill cut the answer off (a delete stays in doubt)
                if len(led.doubts) < 5:
                    led.doubts.append(f"{op}: {exc!r}")

    def _delete(self, c: Client, op: str, service: str, prefix: str, target: str,
                doubt: set[str], deleted: set[str], gone: tuple[int, ...]) -> None:
        """DELETE ``prefix + target``: in doubt until answered; 204 is acknowledged, a code in
        ``gone`` (already deleted or busy) settles the doubt, anything else is unexpected."""
        with self.ledger.lock:
            doubt.add(target)
        r = c(service, "DELETE", prefix + target)
        if r.status_code != 204 and r.status_code not in gone:
            self._unexpected(op, r)  # (takes the lock itself)
            return
        with self.ledger.lock:
            if r.status_code == 204:
                deleted.add(target)
            doubt.discard(target)

    def _unexpected(self, op: str, r: httpx.Response) -> None:
        with self.ledger.lock:
            self.ledger.errors.append(f"{op}: {r.status_code} {r.text[:200]}")

    def load(self, seconds: float, min_acks: int = 3, cap: float = 30.0) -> None:
        """Run the workload from ``threads`` threads, then kill the cloud under it: after
        ``seconds`` once at least ``min_acks`` requests were acknowledged (at most ``cap``
        seconds), so every kill lands on a cloud doing work however slow the machine."""
        assert self.cloud is not None
        stop = threading.Event()

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            c = Client(self.cloud, self.token)  # type: ignore[arg-type]
            while not stop.is_set():
                self._one(c, rng)

        ts = [threading.Thread(target=worker, args=(self.rng.random(),))
              for _ in range(self.threads)]
        acked = self.ledger.acknowledged
        t0 = time.monotonic()
        for t in ts:
            t.start()
        time.sleep(seconds)
        while (self.ledger.acknowledged < acked + min_acks
               and time.monotonic() - t0 < cap):
            time.sleep(0.1)
        stop.set()  # requests already sent are in flight when the kill comes
        self.kill()
        for t in ts:
            t.join(60)

    # ------------------------------------------------------------------ checks
    def settle(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Wait for the reconcile window: no server building or with a task state."""
        assert self.cloud is not None
        c = Client(self.cloud, self.cloud.token())
        deadline = time.monotonic() + timeout
        while True:
            servers = self._servers(c)
            busy = [s for s in servers if s["status"] == "BUILD"
                    or s["OS-EXT-STS:task_state"] is not None]
            if not busy or time.monotonic() > deadline:
                return servers
            time.sleep(0.5)

    @staticmethod
    def _servers(c: Client) -> list[dict[str, Any]]:
        r = c("compute", "GET", "/v2.1/servers/detail?all_tenants=1&limit=100000")
        assert r.status_code == 200, r.text
        return list(r.json()["servers"])

    def check(self) -> dict[str, Any]:
        """Counts of lost, resurrected, duplicates, stuck and usage drift (all should be 0)."""
        assert self.cloud is not None
        led = self.ledger
        servers = self.settle()
        c = Client(self.cloud, self.cloud.token())
        ids = {s["id"] for s in servers}
        lost = sorted(led.servers - led.servers_deleted - led.servers_delete_doubt - ids)
        resurrected = sorted(led.servers_deleted & ids)
        stuck = [s["id"] for s in servers if s["status"] == "BUILD"
                 or s["OS-EXT-STS:task_state"] is not None]
        ports = c("network", "GET", "/v2.0/ports").json()["ports"]
        port_ids = {p["id"] for p in ports}
        lost += sorted(led.ports - led.ports_deleted - led.ports_delete_doubt - port_ids)
        resurrected += sorted(led.ports_deleted & port_ids)
        net_ids = {n["id"] for n in c("network", "GET", "/v2.0/networks").json()["networks"]}
        lost += sorted(led.networks - net_ids)
        macs = Counter(p["mac_address"] for p in ports)
        ips = Counter((p["network_id"], ip["ip_address"]) for p in ports
                      for ip in p["fixed_ips"])
        duplicates = [m for m, n in macs.items() if n > 1] + [a for a, n in ips.items() if n > 1]
        # Ports of servers that are gone (a server's ports go with it).
        orphans = [p["id"] for p in ports if str(p.get("device_owner")).startswith("compute:")
                   and p["device_id"] not in ids]
        drift = self._drift(c, servers, ports)
        if lost or resurrected or duplicates or stuck or orphans or drift:
            # The cloud's log says why (the data dir goes with the test).
            logs = [line for line in self.cloud.log().splitlines()
                    if "WARNING" in line or "ERROR" in line or "Traceback" in line]
            self.log_excerpt = logs[-40:]
        return {"kills": self.kills, "requests": led.requests,
                "acknowledged": led.acknowledged, "in_doubt": led.in_doubt,
                "servers": len(servers), "lost": lost, "resurrected": resurrected,
                "duplicates": duplicates, "stuck": stuck, "orphan_ports": orphans,
                "usage_drift": drift, "unexpected_answers": led.errors[:20],
                "restart_seconds": [round(s, 1) for s in self.restart_seconds],
                "log": self.log_excerpt}

    def _drift(self, c: Client, servers: list[dict[str, Any]],
               ports: list[dict[str, Any]]) -> list[str]:
        out: list[str] = []
        placed = [s for s in servers if s.get("OS-EXT-SRV-ATTR:host")]
        want = {"VCPU": FLAVOR["vcpus"] * len(placed), "MEMORY_MB": FLAVOR["ram"] * len(placed)}
        have: Counter[str] = Counter()
        for rp in c("placement", "GET", "/resource_providers").json()["resource_providers"]:
            u = c("placement", "GET", f"/resource_providers/{rp['uuid']}/usages").json()
            have.update(u["usages"])
        for rc, n in want.items():
            if have.get(rc, 0) != n:
                out.append(f"placement {rc}: {have.get(rc, 0)} used, live servers hold {n}")
        if out:  # which servers: to find the cause
            for s in servers:
                a = c("placement", "GET", f"/allocations/{s['id']}").json()["allocations"]
                if bool(a) != bool(s.get("OS-EXT-SRV-ATTR:host")):
                    out.append(f"server {s['id']} {s['status']} host "
                               f"{s.get('OS-EXT-SRV-ATTR:host')} allocations {a} fault "
                               f"{(s.get('fault') or {}).get('message')}")
        mem = self._hypervisor_memory(c) - self.base_memory
        if mem != want["MEMORY_MB"]:
            out.append(f"hypervisors memory_mb_used {mem}, live servers hold "
                       f"{want['MEMORY_MB']}")
        q = c("compute", "GET", f"/v2.1/os-quota-sets/{self.project}/detail").json()
        mine = [s for s in servers if s["tenant_id"] == self.project]
        for res, n in (("instances", len(mine)), ("cores", FLAVOR["vcpus"] * len(mine)),
                       ("ram", FLAVOR["ram"] * len(mine))):
            if q["quota_set"][res]["in_use"] != n:
                out.append(f"quota {res} in_use {q['quota_set'][res]['in_use']}, live {n}")
        nq = c("network", "GET", f"/v2.0/quotas/{self.project}/details")
        if nq.status_code == 200:
            used = nq.json()["quota"]["port"]["used"]
            live = sum(1 for p in ports if p["project_id"] == self.project)
            if used != live:
                out.append(f"network quota port used {used}, live ports {live}")
        return out


def run(root: Path, kills: int, env: dict[str, str] | None = None, hosts: int = 3,
        threads: int = 6, load: tuple[float, float] = (1.0, 3.0),
        seed: int | None = None) -> dict[str, Any]:
    """Start, then ``kills`` times: load for a random while, kill, restart; check."""
    run_ = CrashRun(root, env, hosts, threads, seed)
    run_.start()
    try:
        run_.setup()
        for _ in range(kills):
            run_.load(run_.rng.uniform(*load))
            run_.start()
        return run_.check()
    finally:
        run_.stop()
