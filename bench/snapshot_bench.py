#!/usr/bin/env python3
"""Snapshot benchmark: save, load and reset a cloud with many servers and a lot of images.

    .venv/bin/python bench/snapshot_bench.py [--servers 1000] [--image-mib 1024] [--rounds 3]

One ``onestack up`` (fake driver, free ports, temporary data dir) gets ``--servers`` ACTIVE
servers (booted through the API) and ``--image-mib`` MiB of image data (four images). Then,
``--rounds`` times each, wall-clock times of the CLI commands as a user runs them:

1. ``onestack snapshot save`` while the cloud runs (target <= 2 s);
2. ``onestack snapshot load`` on the running cloud, until every API answers again (it
   restarts in place; target <= 2 s), every server ACTIVE again afterwards;
3. ``onestack reset`` on the running cloud, likewise (target <= 2 s).

Prints one line per figure, writes ``bench/results/snapshot.json`` and exits non-zero when a
target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compute_bench import BIN, ROOT, Cloud  # noqa: E402

TARGET_S = 2.0


def onestack(cloud: Cloud, *args: str) -> float:
    t0 = time.monotonic()
    res = subprocess.run([str(BIN / "onestack"), *args, "--data-dir", str(cloud.data)],
                         capture_output=True, text=True, timeout=600)
    took = time.monotonic() - t0
    if res.returncode != 0:
        raise RuntimeError(f"onestack {' '.join(args)} failed: {res.stdout}{res.stderr}")
    return took


def active(cloud: Cloud) -> int:
    cloud.token = cloud._token()  # noqa: SLF001 - the bench's own helper
    h = {**cloud.headers, "X-Auth-Token": cloud.token}
    n, marker = 0, None
    while True:
        params = {"limit": "1000", **({"marker": marker} if marker else {})}
        servers = httpx.get(cloud.url("compute") + "/v2.1/servers/detail", headers=h,
                            params=params, timeout=60).json()["servers"]
        n += sum(1 for s in servers if s["status"] == "ACTIVE")
        if len(servers) < 1000:
            return n
        marker = servers[-1]["id"]


def populate(cloud: Cloud, servers: int, image_mib: int) -> None:
    cloud.unlimited_quota()
    for i in range(4):
        h = {"X-Auth-Token": cloud.token}
        img = httpx.post(cloud.url("image") + "/v2/images", headers=h, json={
            "name": f"big-{i}", "disk_format": "raw", "container_format": "bare"}).json()
        chunk = os.urandom(1 << 20)
        body = (chunk for _ in range(image_mib // 4))
        r = httpx.put(cloud.url("image") + f"/v2/images/{img['id']}/file", content=body,
                      headers={**h, "Content-Type": "application/octet-stream"}, timeout=600)
        r.raise_for_status()
    left = servers
    while left > 0:
        n = min(100, left)
        r = httpx.post(cloud.url("compute") + "/v2.1/servers", headers=cloud.headers, json={
            "server": {"name": "bench", "imageRef": cloud.image, "flavorRef": "1",
                       "min_count": n, "networks": "none"}}, timeout=120)
        r.raise_for_status()
        left -= n
    deadline = time.monotonic() + 600
    while active(cloud) < servers:
        if time.monotonic() > deadline:
            raise RuntimeError("servers did not become ACTIVE")
        time.sleep(1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--servers", type=int, default=1000)
    ap.add_argument("--image-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cloud = Cloud(hosts=max(1, args.servers // 250))  # 512 1-vCPU servers fit a fake host
    try:
        populate(cloud, args.servers, args.image_mib)
        saves, loads, resets = [], [], []
        for i in range(args.rounds):
            saves.append(onestack(cloud, "snapshot", "save", f"b{i}"))
        for i in range(args.rounds):
            loads.append(onestack(cloud, "snapshot", "load", f"b{i}"))
            got = active(cloud)
            if got != args.servers:
                raise RuntimeError(f"{got} servers ACTIVE after the load, not {args.servers}")
        for _ in range(args.rounds):
            resets.append(onestack(cloud, "reset"))
            onestack(cloud, "snapshot", "load", "b0")  # back to a full cloud for the next
        size = sum(f.stat().st_size for f in (cloud.data / "snapshots" / "b0").rglob("*")
                   if f.is_file())
    finally:
        cloud.stop()
    result = {"servers": args.servers, "image_mib": args.image_mib, "rounds": args.rounds,
              "snapshot_bytes": size,
              "save_s": round(statistics.median(saves), 3),
              "load_s": round(statistics.median(loads), 3),
              "reset_s": round(statistics.median(resets), 3),
              "target_s": TARGET_S}
    print(f"snapshot save  ({args.servers} servers, {args.image_mib} MiB images): "
          f"{result['save_s']:.2f} s (median of {args.rounds}; target <= {TARGET_S} s)")
    print(f"snapshot load  (running cloud, until every API answers): {result['load_s']:.2f} s")
    print(f"reset          (running cloud, until every API answers): {result['reset_s']:.2f} s")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "snapshot.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0 if max(result["save_s"], result["load_s"], result["reset_s"]) <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
