"""QEMU driver benchmark: ``sudo .venv/bin/python bench/qemu_bench.py [--runs 5] [--parallel 5]``.

Measures, with the onestack test guest (kernel + initramfs, config drive, 256 MB, 1 vCPU):

* create -> ready: from ``spawn()`` to the guest's ``onestack-guest: <name> ready`` console
  line, sequentially, median of ``--runs`` (target <= 15 s under TCG);
* ``--parallel`` guests spawned at once: wall time until every one is ready;
* RSS of each idle QEMU process (after boot), and the part beyond the guest's RAM size.

Prints a JSON summary as the last line. Cleans up every guest and its temp data dir.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from onestack.drivers.hypervisor.qemu import QemuDriver
from onestack.drivers.hypervisor.testguest import GUEST_FLAVOR, guest_spec
from onestack.guestimage import build_guest_image


async def _ready(driver: QemuDriver, spec: dict, timeout: float = 300.0) -> float:
    marker = f"onestack-guest: {spec['name']} ready"
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if marker in await driver.get_console_output(spec):
            return time.monotonic()
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{spec['name']} not ready after {timeout} s")


async def _create(driver: QemuDriver, spec: dict) -> float:
    start = time.monotonic()
    await driver.spawn(spec)
    return await _ready(driver, spec) - start


def _rss_mb(driver: QemuDriver, uuid: str) -> float:
    pid = int((driver.root / uuid / "qemu.pid").read_text())
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def main(runs: int, parallel: int) -> dict:
    guest = build_guest_image()
    data_dir = Path(tempfile.mkdtemp(prefix="onestack-qemu-bench-"))
    driver = QemuDriver("bench", data_dir=data_dir)
    await driver.init_host()
    results: dict = {"accel": driver.accel, "cpus": os.cpu_count(),
                     "load_avg_start": os.getloadavg()[0]}
    try:
        times = []
        for i in range(runs):
            spec = guest_spec(guest, f"bench{i}")
            times.append(await _create(driver, spec))
            await driver.destroy(spec)
            print(f"create -> ready #{i + 1}: {times[-1]:.2f} s", flush=True)
        results["create_to_ready_s"] = [round(t, 2) for t in times]
        results["create_to_ready_median_s"] = round(statistics.median(times), 2)

        specs = [guest_spec(guest, f"par{i}") for i in range(parallel)]
        start = time.monotonic()
        await asyncio.gather(*(_create(driver, s) for s in specs))
        results[f"parallel_{parallel}_wall_s"] = round(time.monotonic() - start, 2)
        print(f"{parallel} in parallel: {results[f'parallel_{parallel}_wall_s']} s", flush=True)
        await asyncio.sleep(3.0)  # idle
        rss = [_rss_mb(driver, s["uuid"]) for s in specs]
        ram = GUEST_FLAVOR["memory_mb"]
        results["idle_rss_mb"] = [round(r, 1) for r in rss]
        results["idle_rss_mb_median"] = round(statistics.median(rss), 1)
        results["guest_ram_mb"] = ram
        results["rss_beyond_ram_mb_median"] = round(max(0.0, statistics.median(rss) - ram), 1)
        for s in specs:
            await driver.destroy(s)
    finally:
        for uuid in await driver.list_instances():
            await driver.destroy({"uuid": uuid})
        shutil.rmtree(data_dir, ignore_errors=True)
    return results


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("run as root (tap devices, /dev/kvm)")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.runs, args.parallel))))
