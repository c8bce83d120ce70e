#!/usr/bin/env python3
"""Image data path benchmark: upload and download of a large image over loopback.

    .venv/bin/python bench/image_bench.py [--size-mib 1024] [--dir /tmp]

Starts ``onestack up`` on free ports with its data dir under ``--dir``, writes a random file of
``--size-mib`` MiB there, and measures in the same run, on the same disk, in ``--rounds``
rounds (each round: copy, then upload, then download; the figures are medians, the ratios the
median of the rounds' ratios, because disk speed on a shared machine drifts):

* a plain file copy of those bytes (read + write + fsync), the baseline;
* ``PUT /v2/images/{id}/file`` of the file (a sized HTTP/1.1 request whose body the client
  sends with ``os.sendfile``, so the client costs little CPU), ratio to the copy;
* ``GET /v2/images/{id}/file`` into a file (+ fsync; the client moves the body from the socket
  to the file with ``os.splice``), ratio to the copy; the downloaded bytes are checked;
* the server's CPU seconds (all threads) per GiB moved, and the ceiling that hashing alone
  puts on an upload (md5 and sha512 speed on one core each, spread over the cores);
* the onestack process RSS (``/proc/PID/status`` VmRSS) before and at its peak during each
  upload, sampled every 20 ms (the largest growth counts).

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
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
CHUNK = 1 << 20
#: Client read size of the download (big reads keep the client off the critical path).
READ = 8 << 20
#: Server CPU seconds (user + system, all threads) of each upload and download.
CPU: dict[str, list[float]] = {"upload": [], "download": []}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def copy_file(src: Path, dst: Path) -> float:
    t0 = time.perf_counter()
    with src.open("rb", buffering=0) as fin, dst.open("wb", buffering=0) as fout:
        while data := fin.read(4 * CHUNK):
            fout.write(data)
        os.fsync(fout.fileno())
    return time.perf_counter() - t0


def hash_speeds(src: Path, mib: int = 256) -> tuple[float, float]:
    """MiB/s of md5 and of sha512 on one core each, over the first ``mib`` MiB of ``src``
    (already in memory: hashing alone, no I/O)."""
    with src.open("rb") as fh:
        data = fh.read(mib << 20)
    out = []
    for algo in ("md5", "sha512"):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            hashlib.new(algo, data, usedforsecurity=False).digest()
            best = min(best, time.perf_counter() - t0)
        out.append(len(data) / (1 << 20) / best)
    return out[0], out[1]


def profiler(args: argparse.Namespace, pid: int, phase: str) -> subprocess.Popen[bytes] | None:
    """Start py-spy on ``pid`` when asked to (stopped with SIGINT after the phase)."""
    if not args.py_spy:
        return None
    return subprocess.Popen([str(BIN / "py-spy"), "record", "-p", str(pid), "--threads",
                             "-r", "200", "-f", "raw", "-o",
                             f"{args.py_spy}-{phase}.txt"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def stop_profiler(prof: subprocess.Popen[bytes] | None) -> None:
    if prof is not None:
        prof.send_signal(signal.SIGINT)
        prof.wait(60)


def upload(args: argparse.Namespace, pid: int, port: int, token: str, image_id: str,
           src: Path, size: int, rnd: int) -> tuple[float, float]:
    """PUT the file (sendfile), returns (seconds, peak RSS growth in MiB)."""
    rss_before = rss_kib(pid)
    peak = rss_before
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_kib(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    prof = profiler(args, pid, f"upload{rnd}")
    time.sleep(1 if prof else 0)
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", port), timeout=600)
    head = (f"PUT /v2/images/{image_id}/file HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"X-Auth-Token: {token}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {size}\r\n\r\n")
    sock.sendall(head.encode("latin-1"))
    with src.open("rb", buffering=0) as fh:
        sock.sendfile(fh, 0, size)  # os.sendfile underneath: no copies in Python
    resp = http.client.HTTPResponse(sock, method="PUT")
    resp.begin()
    resp.read()
    elapsed = time.perf_counter() - t0
    CPU["upload"].append(cpu_seconds(pid) - cpu0)
    stop_profiler(prof)
    stop.set()
    sampler.join()
    sock.close()
    assert resp.status == 204, resp.status
    return elapsed, (peak - rss_before) / 1024


def download(args: argparse.Namespace, pid: int, port: int, token: str, image_id: str,
             work: Path, size: int, want: str, rnd: int) -> float:
    """GET the image into a file (+ fsync); returns seconds.

    A plain HTTP/1.1 GET on a socket; the body goes from the socket to the file with
    ``os.splice`` through a pipe (the kernel moves it, the client does no copying in Python),
    so the client is not what is measured.
    """
    out = work / "download.bin"
    prof = profiler(args, pid, f"download{rnd}")
    time.sleep(1 if prof else 0)
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall((f"GET /v2/images/{image_id}/file HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  f"X-Auth-Token: {token}\r\nConnection: close\r\n\r\n").encode("latin-1"))
    head = b""
    while b"\r\n\r\n" not in head:
        piece = sock.recv(65536)
        assert piece, "connection closed before the response head"
        head += piece
    head, _, body = head.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].split()[1] == "200", lines[0]
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers["content-length"])
    r, w = os.pipe()
    try:
        with out.open("wb", buffering=0) as fh:
            fh.write(body)
            left = length - len(body)
            while left > 0:
                n = os.splice(sock.fileno(), w, min(left, 1 << 20))
                assert n, "connection closed before the body was complete"
                moved = 0
                while moved < n:
                    moved += os.splice(r, fh.fileno(), n - moved)
                left -= n
            os.fsync(fh.fileno())
    finally:
        os.close(r)
        os.close(w)
        sock.close()
    elapsed = time.perf_counter() - t0
    CPU["download"].append(cpu_seconds(pid) - cpu0)
    stop_profiler(prof)
    assert headers.get("content-md5") == want
    assert out.stat().st_size == size == length
    md5 = hashlib.md5(usedforsecurity=False)  # outside the timing: the bytes are right
    with out.open("rb") as fh:
        while data := fh.read(READ):
            md5.update(data)
    assert md5.hexdigest() == want, "downloaded data differ"
    out.unlink()
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--rounds", type=int, default=3, help="copy/upload/download rounds "
                    "(figures are medians; default 3)")
    ap.add_argument("--py-spy", metavar="PREFIX", help="profile the server with py-spy "
                    "(installed in the venv) during each transfer: PREFIX-upload.txt and "
                    "PREFIX-download.txt, collapsed stacks")
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

    # Every service on a free port, so another cloud on this machine is no obstacle.
    ports = {name: free_port() for name in ("identity", "image", "compute", "metadata",
                                            "console", "placement", "network", "volume")}
    env = {**os.environ, "ONESTACK_ADMIN_PASSWORD": "Bench-Admin-1",
           "ONESTACK_BCRYPT_ROUNDS": "4", "ONESTACK_COMPUTE_DRIVER": "fake",
           **{f"ONESTACK_{name.upper()}_PORT": str(port) for name, port in ports.items()}}
    log = (work / "onestack.log").open("wb")
    proc = subprocess.Popen([str(BIN / "onestack"), "up", "--data-dir", str(work / "data")],
                            env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    image_url = f"http://127.0.0.1:{ports['image']}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if (httpx.get(image_url + "/healthcheck", timeout=1).status_code == 200
                        and httpx.get(f"http://127.0.0.1:{ports['identity']}/v3",
                                      timeout=1).status_code == 200):
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
        copy_file(src, work / "copy.bin")
        (work / "copy.bin").unlink()
        port = ports["image"]
        rounds: list[tuple[float, float, float]] = []
        growths: list[float] = []
        for rnd in range(args.rounds):
            # Disk and page-cache speed on a shared machine drift within seconds, so each
            # round times the copy right before the transfers it is compared with.
            copy_time = copy_file(src, work / "copy.bin")
            (work / "copy.bin").unlink()
            img = client.post("/v2/images", json={"name": "bench", "disk_format": "raw",
                                                   "container_format": "bare"}).json()
            upload_time, growth = upload(args, proc.pid, port, token, img["id"], src, size,
                                         rnd)
            shown = client.get(f"/v2/images/{img['id']}").json()
            assert shown["checksum"] == want, "checksum mismatch after upload"
            download_time = download(args, proc.pid, port, token, img["id"], work, size,
                                     want, rnd)
            client.delete(f"/v2/images/{img['id']}")
            rounds.append((copy_time, upload_time, download_time))
            growths.append(growth)

        mib = size / (1 << 20)
        print(f"size                {mib:.0f} MiB, {args.rounds} rounds "
              "(copy, upload, download each round)")
        for i, (c, u, d) in enumerate(rounds, 1):
            print(f"round {i}: copy {mib / c:7.1f} MiB/s  upload {mib / u:7.1f} MiB/s "
                  f"({c / u:4.0%})  download {mib / d:7.1f} MiB/s ({c / d:4.0%})  "
                  f"RSS +{growths[i - 1]:.1f} MiB")
        up_ratio = statistics.median(c / u for c, u, _d in rounds)
        down_ratio = statistics.median(c / d for c, _u, d in rounds)
        med = [statistics.median(x[i] for x in rounds) for i in range(3)]
        growth = max(growths)
        print(f"file copy           {mib / med[0]:8.1f} MiB/s (median)")
        print(f"upload              {mib / med[1]:8.1f} MiB/s (median)"
              f"  = {up_ratio:.0%} of copy (median of the rounds' ratios)")
        print(f"download            {mib / med[2]:8.1f} MiB/s (median)"
              f"  = {down_ratio:.0%} of copy (median of the rounds' ratios)")
        fastest = min(c for c, _u, _d in rounds)
        print(f"vs the fastest copy ({mib / fastest:.1f} MiB/s): upload "
              f"{fastest / med[1]:.0%}, download {fastest / med[2]:.0%} (medians)")
        # What the hashes Glance records (md5 ``checksum``, sha512 ``os_hash_value``) leave
        # possible at all: each is one serial stream, so with the other work free and
        # perfectly spread, an upload cannot beat max(md5 time, (md5 + sha512) / cores).
        md5_speed, sha_speed = hash_speeds(src)
        cores = os.cpu_count() or 1
        per_mib = max(1 / md5_speed, (1 / md5_speed + 1 / sha_speed) / cores)
        print(f"hashing alone       md5 {md5_speed:.0f} MiB/s, sha512 {sha_speed:.0f} MiB/s "
              f"(one core each); on {cores} cores an upload can at best reach "
              f"{1 / per_mib:.0f} MiB/s = {med[0] / mib / per_mib:.0%} of the median copy, "
              "before any network or disk work")
        gib = size / (1 << 30)
        print(f"server CPU per GiB  upload {statistics.median(CPU['upload']) / gib:.2f} s, "
              f"download {statistics.median(CPU['download']) / gib:.2f} s (medians)")
        print(f"RSS during upload   growth {growth:.1f} MiB (largest of the rounds)")
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
