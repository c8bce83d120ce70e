"""Nova's standard diagnostics of a QEMU guest, read off the running guest: memory from its
QEMU process, per-vCPU times from the vCPU threads (QMP ``query-cpus-fast`` + ``/proc``),
disk counters from ``query-blockstats``, NIC counters from the tap devices (seen from the
guest's side)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from onestack.drivers.hypervisor.qemu.guests import QemuGuests
from onestack.drivers.hypervisor.qemu.host import thread_cpu_ns
from onestack.drivers.hypervisor.qemu.nics import ports_of, tap_stats
from onestack.drivers.hypervisor.qemu.process import GuestProcesses
from onestack.drivers.hypervisor.qemu.qmp import QMPError
from onestack.drivers.network.linux.names import tap as tap_name


def _rss_kb(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def guest_diagnostics(guests: QemuGuests, processes: GuestProcesses,
                            uuid: str) -> dict[str, Any]:
    """The diagnostics of guest ``uuid`` (``InstanceNotFound`` when it has no record).

    ``driver`` is ``libvirt``: the API's field is an enumeration of Nova's driver families
    and this driver is the QEMU/KVM family (clients validate the name); ``hypervisor`` says
    what actually runs (``kvm`` or ``qemu`` for TCG), as Nova's libvirt driver reports its
    ``virt_type``.
    """
    state = guests.load_state(uuid)
    flavor = state["spec"].get("flavor") or {}
    power = await processes.power_state(uuid)
    pid = processes.pid(uuid)
    rss_kb = _rss_kb(pid) if pid is not None else 0
    d = guests.dir(uuid)
    ports = ports_of(state["spec"])
    cpus: list[dict[str, Any]] = []
    disks: list[dict[str, Any]] = []
    if pid is not None:
        with contextlib.suppress(QMPError, OSError, asyncio.TimeoutError):
            for cpu in await processes.qmp(uuid, "query-cpus-fast", timeout=5.0) or []:
                cpus.append({"id": int(cpu.get("cpu-index", len(cpus))),
                             "time": thread_cpu_ns(pid, cpu.get("thread-id")),
                             "utilisation": None})
        with contextlib.suppress(QMPError, OSError, asyncio.TimeoutError):
            for dev in await processes.qmp(uuid, "query-blockstats", timeout=5.0) or []:
                st = dev.get("stats") or {}
                disks.append({"read_bytes": st.get("rd_bytes"),
                              "read_requests": st.get("rd_operations"),
                              "write_bytes": st.get("wr_bytes"),
                              "write_requests": st.get("wr_operations"),
                              "errors_count": sum(int(st.get(k) or 0) for k in (
                                  "failed_rd_operations", "failed_wr_operations",
                                  "failed_flush_operations"))})
    nics = [tap_stats(tap_name(str(p.get("port_id") or p.get("id"))),
                      p.get("mac_address") or p.get("mac")) for p in ports]
    has_iso = (d / "config.iso").exists()
    return {"state": power.name.lower(), "driver": "libvirt",
            "hypervisor": "kvm" if processes.accel == "kvm" else "qemu",
            "hypervisor_os": "linux",
            "num_cpus": int(flavor.get("vcpus") or 1),
            "memory_details": {"maximum": int(flavor.get("memory_mb") or 0),
                               "used": rss_kb // 1024},
            "uptime": int(time.time() - (d / "qemu.pid").stat().st_mtime) if pid else 0,
            "config_drive": has_iso, "num_nics": len(ports),
            "num_disks": len(disks) if disks else 1 + int(has_iso),
            "cpu_details": cpus, "nic_details": nics, "disk_details": disks}
