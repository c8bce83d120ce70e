#!/usr/bin/env python3
"""Identity benchmark: onestack side by side with the real Keystone, in one run.

    .venv/bin/python bench/identity_bench.py [--seconds 10] [--no-keystone]

Starts Keystone 30 from PyPI (SQLite, Fernet, in-memory cache, uwsgi with 2 workers) with
``../shared/bench/keystone-up.sh`` and onestack (``onestack up``, default settings: bcrypt
cost 12 like Keystone) in a temporary data dir, then measures with wrk through
``../shared/bench/token-bench.sh`` (2 threads, 8 connections): token validation, rescoping
and password authentication per second. Also measured: the bcrypt floor (checks/s at the same
cost on every core, the most any password authentication can do), onestack's first start
and restart times to healthy, and its idle RSS. Prints a table and writes
``bench/results/identity.json``. Needs wrk (apt-get install wrk) and curl.
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
import threading
import time
from pathlib import Path

import bcrypt
import httpx

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ONESTACK_SHARED", REPO.parent / "shared"))
if not (SHARED / "bench").exists():
    SHARED = Path("/work/shared")
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token_bench(url: str, user: str, password: str, project: str, seconds: int
                ) -> dict[str, float]:
    out = subprocess.run(["bash", str(SHARED / "bench" / "token-bench.sh"), url, user,
                          password, project, str(seconds)],
                         capture_output=True, text=True, check=True).stdout
    result = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            try:
                result[parts[0]] = float(parts[1])
            except ValueError:
                result[parts[0]] = 0.0
    return result


def bcrypt_floor(rounds: int, seconds: float = 5.0) -> float:
    """bcrypt checks per second at ``rounds`` using every core (bcrypt releases the GIL)."""
    hashed = bcrypt.hashpw(b"benchmark-password", bcrypt.gensalt(rounds))
    count = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def work() -> None:
        nonlocal count
        while time.monotonic() < deadline:
            bcrypt.checkpw(b"benchmark-password", hashed)
            with lock:
                count += 1

    threads = [threading.Thread(target=work) for _ in range(os.cpu_count() or 1)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count / (time.monotonic() - start)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_onestack(data: Path, port: int, password: str) -> tuple[subprocess.Popen[bytes], float]:
    from onestack.bootstrap import SERVICES

    env = {**os.environ, "ONESTACK_ADMIN_PASSWORD": password,
           "ONESTACK_COMPUTE_DRIVER": "fake"}
    for name in SERVICES:  # every other service on a free port too
        env[f"ONESTACK_{name.upper()}_PORT"] = str(free_port())
    env["ONESTACK_IDENTITY_PORT"] = str(port)
    env.pop("ONESTACK_BCRYPT_ROUNDS", None)
    t0 = time.monotonic()
    proc = subprocess.Popen([str(BIN / "onestack"), "up", "--data-dir", str(data)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    while time.monotonic() - t0 < 60:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthcheck", timeout=1).status_code == 200:
                return proc, time.monotonic() - t0
        except httpx.HTTPError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("onestack did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--no-keystone", action="store_true", help="measure onestack only")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("wrk is required: apt-get install wrk", file=sys.stderr)
        return 2
    results: dict[str, object] = {"seconds": args.seconds, "cores": os.cpu_count()}

    tmp = Path(tempfile.mkdtemp(prefix="onestack-bench-"))
    port = free_port()
    password = "bench-admin-password"
    try:
        proc, first = start_onestack(tmp / "data", port, password)
        time.sleep(1.5)
        results["onestack_first_start_s"] = round(first, 2)
        stop(proc)
        proc, restart = start_onestack(tmp / "data", port, password)
        results["onestack_restart_s"] = round(restart, 2)
        time.sleep(2)
        results["onestack_idle_rss_mb"] = round(rss_mb(proc.pid), 1)
        url = f"http://127.0.0.1:{port}/v3"
        results["onestack"] = token_bench(url, "admin", password, "admin", args.seconds)
        results["onestack_rss_after_load_mb"] = round(rss_mb(proc.pid), 1)
        stop(proc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    results["bcrypt_floor_12"] = round(bcrypt_floor(12), 2)

    if not args.no_keystone:
        ks_port = free_port()
        env = {**os.environ, "KS_PORT": str(ks_port), "KS_CACHE": "memory"}
        try:
            subprocess.run(["bash", str(SHARED / "bench" / "keystone-up.sh")], env=env,
                           check=True, capture_output=True, timeout=1200)
            ks_url = f"http://127.0.0.1:{ks_port}/v3"
            results["keystone"] = token_bench(ks_url, "admin", "admin", "admin", args.seconds)
        finally:
            subprocess.run(["bash", str(SHARED / "bench" / "keystone-down.sh")], env=env,
                           capture_output=True)

    o = results["onestack"]
    assert isinstance(o, dict)
    floor = float(results["bcrypt_floor_12"])  # type: ignore[arg-type]
    print(f"{'metric':<22}{'onestack':>12}{'keystone':>12}{'ratio':>9}")
    k = results.get("keystone") if isinstance(results.get("keystone"), dict) else None
    for name in ("validate", "rescope", "password"):
        ks = k.get(name) if k else None  # type: ignore[union-attr]
        ratio = f"{o[name] / ks:.1f}x" if ks else "-"
        print(f"{name + ' /s':<22}{o[name]:>12.1f}{(ks or 0):>12.1f}{ratio:>9}")
    print(f"{'bcrypt floor (cost 12)':<22}{floor:>12.1f}   password/floor = "
          f"{o['password'] / floor:.0%}")
    print(f"first start {results['onestack_first_start_s']} s, restart "
          f"{results['onestack_restart_s']} s, idle RSS {results['onestack_idle_rss_mb']} MB, "
          f"RSS after load {results['onestack_rss_after_load_mb']} MB")
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "identity.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
