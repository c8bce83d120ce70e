#!/usr/bin/env python3
"""Health under load: ``GET /`` of every service while 40 clients list 200-server pages.

    .venv/bin/python bench/health_bench.py [--servers 1000] [--clients 40] [--limit 200]
                                           [--seconds 20]

Starts its own ``onestack up`` (fake hypervisor, free loopback ports, temporary data dir),
records ``--servers`` ACTIVE servers directly (as ``bench/compute_bench.py`` does), then runs
two things at once for ``--seconds``:

* the load: ``--clients`` keep-alive connections (one process of their own, so that their
  CPU is not the probes') each listing ``GET /v2.1/servers/detail?limit=200`` pages in turn
  (first page and the pages after each 200th marker);
* the probes (this process, one blocking keep-alive connection per target): ``GET /`` of
  identity, image, placement, network and compute, ``GET /healthcheck`` of compute and
  network, and a token validation (``GET /v3/auth/tokens`` with ``X-Subject-Token``), each
  target by a thread of its own, one request due every 100 ms, timed from when it was due.

Prints p50/p99 of each probe with and without the load, the list throughput (pages/s and
servers/s), writes ``bench/results/health.json``, and exits non-zero when a ``GET /`` p99
under load exceeds 100 ms. Everything stays on loopback; bounded by ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compute_bench import Cloud, seed_servers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 100.0


class Probe:
    """One blocking keep-alive HTTP/1.1 connection timing a GET (reconnects on failure)."""

    def __init__(self, port: int, path: str, headers: dict[str, str] | None = None) -> None:
        self.port, self.path = port, path
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}"
                        "Accept: application/json\r\n\r\n").encode()
        self.sock: socket.socket | None = None
        self.buf = b""

    def _connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        return s

    def get(self) -> tuple[int, float]:
        """(status, seconds) of one request."""
        t0 = time.perf_counter()
        if self.sock is None:
            self.sock = self._connect()
        sock = self.sock
        try:
            sock.sendall(self.request)
            while b"\r\n\r\n" not in self.buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                self.buf += chunk
            head, _, rest = self.buf.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(rest) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                rest += chunk
            self.buf = rest[length:]
        except OSError:
            sock.close()
            self.sock = None
            return 0, time.perf_counter() - t0
        return status, time.perf_counter() - t0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def probes(cloud: Cloud) -> dict[str, Probe]:
    p = cloud.ports
    out = {f"{s} GET /": Probe(p[s], "/") for s in
           ("identity", "image", "placement", "network", "compute")}
    out["compute GET /healthcheck"] = Probe(p["compute"], "/healthcheck")
    out["network GET /healthcheck"] = Probe(p["network"], "/healthcheck")
    out["identity token validate"] = Probe(p["identity"], "/v3/auth/tokens", {
        "X-Auth-Token": cloud.token, "X-Subject-Token": cloud.token})
    return out


def run_probes(targets: dict[str, Probe], seconds: float,
               gap: float = 0.1) -> dict[str, dict[str, float]]:
    """Each target probed by a thread of its own on a fixed schedule, one request every
    ``gap`` seconds, each timed from when it was due (not from when it could be sent): a
    stall counts for every request it held up, as a client arriving then would see it
    (no coordinated omission); a slow target does not thin out the others' samples."""
    times: dict[str, list[float]] = {k: [] for k in targets}
    bad: dict[str, int] = dict.fromkeys(targets, 0)
    start = time.perf_counter()
    count = int(seconds / gap)

    def probe_loop(name: str, probe: Probe) -> None:
        for k in range(count):
            due = start + k * gap
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            status, _ = probe.get()
            times[name].append(time.perf_counter() - due)
            if status == 0 or status >= 500:
                bad[name] += 1

    threads = [threading.Thread(target=probe_loop, args=item) for item in targets.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = {}
    for name, ts in times.items():
        ts.sort()
        out[name] = {"n": len(ts), "errors": bad[name],
                     "p50_ms": statistics.median(ts) * 1000,
                     "p99_ms": ts[min(len(ts) - 1, int(len(ts) * 0.99))] * 1000,
                     "max_ms": ts[-1] * 1000}
    return out


# ----------------------------------------------------------------------------- the load
async def _lister(port: int, headers: dict[str, str], paths: list[str], start: int,
                  stop_at: float, counts: list[int]) -> None:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = start
    try:
        while time.monotonic() < stop_at:
            path = paths[i % len(paths)]
            i += 1
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode())
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            counts[0 if status == 200 else 1] += 1
    finally:
        writer.close()


def _load_main(port: int, headers: dict[str, str], paths: list[str], clients: int,
               seconds: float, result: Any) -> None:
    async def run() -> list[int]:
        counts = [0, 0]
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(_lister(port, headers, paths, c, stop_at, counts)
                               for c in range(clients)))
        return counts

    t0 = time.monotonic()
    ok, bad = asyncio.run(run())
    result.put({"pages": ok, "errors": bad, "seconds": time.monotonic() - t0})


def page_paths(cloud: Cloud, limit: int) -> list[str]:
    """The first page and the page after every ``limit``-th server (markers)."""
    import httpx

    r = httpx.get(cloud.url("compute") + "/v2.1/servers?limit=1000", headers=cloud.headers,
                  timeout=60)
    ids = [s["id"] for s in r.json()["servers"]]
    base = f"/v2.1/servers/detail?limit={limit}"
    return [base] + [f"{base}&marker={ids[k - 1]}" for k in range(limit, len(ids), limit)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", type=int, default=1000)
    p.add_argument("--clients", type=int, default=40)
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--seconds", type=float, default=20.0)
    args = p.parse_args()
    seconds = min(args.seconds, 300.0)
    cloud = Cloud(1)
    try:
        cloud.unlimited_quota()
        seed_servers(cloud, args.servers)
        paths = page_paths(cloud, args.limit)
        targets = probes(cloud)
        idle = run_probes(targets, min(5.0, seconds))
        ctx = multiprocessing.get_context("spawn")
        result = ctx.Queue()
        load = ctx.Process(target=_load_main, args=(
            cloud.ports["compute"], cloud.headers, paths, args.clients, seconds, result))
        load.start()
        time.sleep(1.0)  # the clients connect and the pages start flowing
        loaded = run_probes(targets, max(1.0, seconds - 2.0))
        listing = result.get(timeout=seconds + 120)
        load.join(30)
        for t in targets.values():
            t.close()
    finally:
        cloud.stop()
    pages_s = listing["pages"] / listing["seconds"]
    print(f"load: {args.clients} clients x GET /v2.1/servers/detail?limit={args.limit} over "
          f"{args.servers} servers: {pages_s:.1f} pages/s ({pages_s * args.limit:.0f} "
          f"servers/s, {listing['errors']} errors)")
    print(f"{'probe':<28} {'idle p50/p99 ms':>18} {'loaded p50/p99 ms':>20} {'max':>8} {'n':>6}")
    ok = True
    for name in targets:
        a, b = idle[name], loaded[name]
        miss = name.endswith("GET /") and b["p99_ms"] > TARGET_MS
        ok &= not miss
        print(f"{name:<28} {a['p50_ms']:8.1f} /{a['p99_ms']:7.1f}  {b['p50_ms']:9.1f} /"
              f"{b['p99_ms']:7.1f} {b['max_ms']:8.1f} {b['n']:6d}{'  MISSED' if miss else ''}"
              f"{'  (' + str(b['errors']) + ' errors)' if b['errors'] else ''}")
    print(f"GET / p99 under load <= {TARGET_MS:.0f} ms for every service: "
          f"{'met' if ok else 'MISSED'}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "health.json").write_text(json.dumps({
        "servers": args.servers, "clients": args.clients, "limit": args.limit,
        "list": {**listing, "pages_per_s": pages_s}, "idle": idle, "loaded": loaded},
        indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
