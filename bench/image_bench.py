#!/usr/bin/env python3
"""Image data path benchmark: upload and download of a large image over loopback.

    .venv/bin/python bench/image_bench.py [--size-mib 1024] [--dir /tmp]

Starts ``onestack up`` on free ports with its data dir under ``--dir``, writes a random file of
``--size-mib`` MiB there, and measures in the same run, on the same disk:

* a plain file copy of those bytes (read + write + fsync), the baseline;
* ``PUT /v2/images/{id}/file`` of the file (streamed, chunked), ratio to the copy;
* ``GET /v2/images/{id}/file`` into a file (+ fsync), ratio to the copy;
* the onestack process RSS (``/proc/PID/status`` VmRSS) before and at its peak during the
  upload, sampled every 20 ms.

Prints one line per figure and exits non-zero when a target is missed (>= 50% of copy
speed, <= 32 MiB RSS growth).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
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

import httpx

BIN = Path(sys.executable).parent
CHUNK = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def copy_file(src: Path, dst: Path) -> float:
    t0 = time.perf_counter()
    with src.open("rb", buffering=0) as fin, dst.open("wb", buffering=0) as fout:
        while data := fin.read(4 * CHUNK):
            fout.write(data)
        os.fsync(fout.fileno())
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="onestack-imgbench-", dir=args.dir))
    size = args.size_mib << 20
    src = work / "image.bin"
    md5 = hashlib.md5(usedforsecurity=False)
    with src.open("wb") as fh:
        block = os.urandom(4 * CHUNK)
        written = 0
        while written < size:
            piece = block[: min(len(block), size - written)]
            # vary every block so nothing downstream can dedupe or compress it
            piece = written.to_bytes(8, "little") + piece[8:]
            fh.write(piece)
            md5.update(piece)
            written += len(piece)
    want = md5.hexdigest()

    ports = {"identity": free_port(), "image": free_port()}
    env = {**os.environ, "ONESTACK_ADMIN_PASSWORD": "Bench-Admin-1",
           "ONESTACK_BCRYPT_ROUNDS": "4", "ONESTACK_IDENTITY_PORT": str(ports["identity"]),
           "ONESTACK_IMAGE_PORT": str(ports["image"])}
    log = (work / "onestack.log").open("wb")
    proc = subprocess.Popen([str(BIN / "onestack"), "up", "--data-dir", str(work / "data")],
                            env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    image_url = f"http://127.0.0.1:{ports['image']}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(image_url + "/healthcheck", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                print("onestack did not start", file=sys.stderr)
                return 2
            time.sleep(0.1)
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": "Bench-Admin-1"}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
        r = httpx.post(f"http://127.0.0.1:{ports['identity']}/v3/auth/tokens", json=body)
        token = r.headers["X-Subject-Token"]
        client = httpx.Client(base_url=image_url, headers={"X-Auth-Token": token},
                              timeout=600)

        # Warm the page cache the same way for every contender.
        copy_time = copy_file(src, work / "copy.bin")
        (work / "copy.bin").unlink()
        copy_time = min(copy_time, copy_file(src, work / "copy.bin"))
        (work / "copy.bin").unlink()

        img = client.post("/v2/images", json={"name": "bench", "disk_format": "raw",
                                               "container_format": "bare"}).json()
        rss_before = rss_kib(proc.pid)
        peak = rss_before
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, rss_kib(proc.pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        port = ports["image"]
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        conn.putrequest("PUT", f"/v2/images/{img['id']}/file")
        conn.putheader("X-Auth-Token", token)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        with src.open("rb", buffering=0) as fh:
            while data := fh.read(CHUNK):
                conn.send(data)
        resp = conn.getresponse()
        resp.read()
        upload_time = time.perf_counter() - t0
        stop.set()
        sampler.join()
        assert resp.status == 204, resp.status
        conn.close()
        shown = client.get(f"/v2/images/{img['id']}").json()
        assert shown["checksum"] == want, "checksum mismatch after upload"

        out = work / "download.bin"
        buf = bytearray(CHUNK)
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        conn.request("GET", f"/v2/images/{img['id']}/file", headers={"X-Auth-Token": token})
        resp = conn.getresponse()
        assert resp.status == 200, resp.status
        header_md5 = resp.getheader("content-md5")
        with out.open("wb", buffering=0) as fh:
            while n := resp.readinto(buf):
                fh.write(memoryview(buf)[:n])
            os.fsync(fh.fileno())
        download_time = time.perf_counter() - t0
        conn.close()
        assert header_md5 == want
        assert out.stat().st_size == size

        mib = size / (1 << 20)
        up_ratio = copy_time / upload_time
        down_ratio = copy_time / download_time
        growth = (peak - rss_before) / 1024
        print(f"size                {mib:.0f} MiB")
        print(f"file copy           {mib / copy_time:8.1f} MiB/s ({copy_time:.2f}s)")
        print(f"upload              {mib / upload_time:8.1f} MiB/s ({upload_time:.2f}s)"
              f"  = {up_ratio:.0%} of copy")
        print(f"download            {mib / download_time:8.1f} MiB/s ({download_time:.2f}s)"
              f"  = {down_ratio:.0%} of copy")
        print(f"RSS during upload   {rss_before / 1024:.1f} -> {peak / 1024:.1f} MiB"
              f"  (growth {growth:.1f} MiB)")
        ok = up_ratio >= 0.5 and down_ratio >= 0.5 and growth <= 32
        print("targets             " + ("met" if ok else "MISSED") +
              " (>= 50% of copy speed, <= 32 MiB RSS growth)")
        return 0 if ok else 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
