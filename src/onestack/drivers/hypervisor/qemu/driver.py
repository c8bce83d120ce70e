"""The QEMU hypervisor driver: real guests, one detached ``qemu-system-x86_64`` each.

Same contract as ``fake.py`` (see ``base.py``). Everything a guest owns lives in
``DATA/instances/<uuid>/``::

    state.json      the spec the guest was built from (+ rescue state); the source of truth
                    that lets a new driver object (after the agent restarts, even kill -9)
                    re-adopt and restart the guest
    disk            qcow2 overlay on the cached base image (``DATA/instances/_base``)
    disk.rescue     rescue root disk (while rescued)
    disk.local      the flavor's ephemeral disk (ephemeral_gb; thin qcow2, unformatted)
    disk.swap       the flavor's swap disk (swap MiB; thin qcow2, unformatted)
    config.iso      config drive (ISO 9660, label ``config-2``), when requested
    console.log     serial console (QEMU appends; rotated to console.log.0 past a limit)
    qemu.log        QEMU's own stdout/stderr
    qemu.pid        pidfile written by QEMU; qmp.sock: the QMP monitor
    suspend.state   saved memory of a suspended guest

QEMU runs in its own session (``setsid``) with ``-nodefaults -sandbox on``, no network but
the tap devices of the guest's ports (never ``-netdev user``), consoles on loopback only:
VNC on ``127.0.0.1:5900+N`` (see :meth:`QemuDriver.get_vnc_console`). The accelerator is KVM
when a time-boxed probe boots under it, TCG otherwise (reported as ``cpu_info["accel"]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from onestack.drivers.hypervisor.base import (
    Capabilities,
    DriverError,
    HostResources,
    HypervisorDriver,
    InstanceNotFound,
    InstanceSpec,
    PowerState,
)
from onestack.drivers.hypervisor.configdrive import build_config_drive
from onestack.drivers.hypervisor.qemu import disks as qemu_disks
from onestack.drivers.hypervisor.qemu.cmdline import rescue_device_argv
from onestack.drivers.hypervisor.qemu.host import (
    DEFAULT_KERNEL_CMDLINE,
    QBOOT,
    QEMU_BINARY,
    QEMU_IMG,
    SANDBOX,
    GiB,
    KvmProbe,
    available,  # noqa: F401 - the package's face re-exports it
    cpu_model,
    drop_socket_link,
    free_vnc_display,
    meminfo_mb,
    pid_alive,
    qemu_version,
    run,
    socket_path,
    thread_cpu_ns,
)
from onestack.drivers.hypervisor.qemu.nics import (
    HOTPLUG_SLOTS,
    LEGACY_SLOTS,
    GuestNics,
    VifPlugger,
    ports_of,
    tap_stats,
)
from onestack.drivers.hypervisor.qemu.qmp import QMPClient, QMPError
from onestack.metadata.content import tap_name

LOG = logging.getLogger(__name__)

_RUNSTATES = {
    "running": PowerState.RUNNING,
    "paused": PowerState.PAUSED,
    "postmigrate": PowerState.PAUSED,
    "finish-migrate": PowerState.PAUSED,
    "save-vm": PowerState.PAUSED,
    "restore-vm": PowerState.PAUSED,
    "prelaunch": PowerState.PAUSED,
    "inmigrate": PowerState.PAUSED,
    "debug": PowerState.PAUSED,
    "io-error": PowerState.PAUSED,
    "watchdog": PowerState.PAUSED,
    "colo": PowerState.PAUSED,
    "suspended": PowerState.SUSPENDED,
    "shutdown": PowerState.SHUTDOWN,
    "internal-error": PowerState.CRASHED,
    "guest-panicked": PowerState.CRASHED,
}


class QemuDriver(HypervisorDriver):
    """Runs guests as detached QEMU processes (see the module docstring).

    Options: ``data_dir`` (default: the onestack data dir), ``accel`` (``auto``, ``kvm``,
    ``tcg``), ``force_config_drive``, ``vif_plugger`` (the network driver hook, default
    none: taps stay unplugged), ``console_log_limit`` bytes kept per generation,
    ``kvm_probe_timeout`` s, ``soft_reboot_timeout`` s, ``qemu_binary``,
    ``vif_plugging_timeout`` s (how long a start waits for the data plane to wire the
    guest's ports before it fails, as Nova's ``vif_plugging_timeout`` with
    ``vif_plugging_is_fatal``).
    """

    hypervisor_type = "QEMU"
    capabilities = Capabilities(supports_live_migration=False, supports_remote_console=True)

    def __init__(self, host: str, data_dir: str | Path | None = None, accel: str = "auto",
                 force_config_drive: bool = False, vif_plugger: VifPlugger | None = None,
                 console_log_limit: int = 1 << 20, kvm_probe_timeout: float = 3.0,
                 soft_reboot_timeout: float = 60.0, qemu_binary: str = QEMU_BINARY,
                 vif_plugging_timeout: float = 300.0, **options: Any) -> None:
        super().__init__(host)
        if data_dir is None:
            from onestack.config import default_data_dir

            data_dir = default_data_dir()
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "instances"
        self.base_dir = self.root / "_base"
        self.requested_accel = accel
        self.force_config_drive = force_config_drive
        self.console_log_limit = console_log_limit
        self.kvm_probe_timeout = kvm_probe_timeout
        self.soft_reboot_timeout = soft_reboot_timeout
        self.qemu_binary = qemu_binary
        self.vif_plugging_timeout = vif_plugging_timeout
        self.nics = GuestNics(vif_plugger, vif_plugging_timeout)
        self.disks = qemu_disks.GuestDisks()
        if options:
            LOG.debug("QEMU driver ignores options %s", sorted(options))
        self._accel: str | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._base_lock = threading.Lock()
        if not available():
            raise DriverError(f"{QEMU_BINARY} and {QEMU_IMG} are needed by the QEMU driver "
                              "(Debian/Ubuntu: apt-get install qemu-system-x86 qemu-utils)")

    @property
    def vif_plugger(self) -> VifPlugger | None:
        """The network driver's hook that wires taps (set by the composition root)."""
        return self.nics.vif_plugger

    @vif_plugger.setter
    def vif_plugger(self, plugger: VifPlugger | None) -> None:
        self.nics.vif_plugger = plugger

    # ------------------------------------------------------------------ paths & state
    def _dir(self, uuid: str) -> Path:
        if not re.fullmatch(r"[0-9A-Za-z-]{1,64}", uuid) or uuid.startswith("_"):
            raise InstanceNotFound(f"Instance {uuid} could not be found.")
        return self.root / uuid

    def _sock(self, uuid: str, name: str) -> str:
        """Path of a unix socket in the instance dir, short enough for ``sun_path``."""
        return socket_path(self._dir(uuid), name)

    def _drop_sock_link(self, uuid: str) -> None:
        drop_socket_link(self._dir(uuid))

    def _load_state(self, uuid: str) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads((self._dir(uuid) / "state.json").read_text())
        except (OSError, ValueError) as exc:
            raise InstanceNotFound(f"Instance {uuid} could not be found.") from exc
        return state

    def _save_state(self, uuid: str, state: dict[str, Any]) -> None:
        path = self._dir(uuid) / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    def _lock(self, uuid: str) -> asyncio.Lock:
        lock = self._locks.get(uuid)
        if lock is None:
            lock = self._locks[uuid] = asyncio.Lock()
        return lock

    def _pid(self, uuid: str) -> int | None:
        """The pid of the guest's live QEMU, or None."""
        child = self._children.get(uuid)
        if child is not None and child.poll() is not None:
            self._children.pop(uuid, None)  # reaped
        try:
            pid = int((self._dir(uuid) / "qemu.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid, uuid) else None

    @property
    def accel(self) -> str:
        if self._accel is None:
            if self.requested_accel in ("kvm", "tcg"):
                self._accel = self.requested_accel
            else:
                self._accel = KvmProbe.accel(self.qemu_binary, self.root / "_accel.json",
                                              self.kvm_probe_timeout)
        return self._accel

    # ------------------------------------------------------------------ host
    async def init_host(self) -> None:
        """Create the directories, pick the accelerator, re-adopt running guests."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.base_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await asyncio.to_thread(lambda: self.accel)
        for uuid in await self.list_instances():
            if self._pid(uuid) is not None:
                LOG.info("re-adopted running guest %s", uuid)

    async def list_instances(self) -> list[str]:
        if not self.root.is_dir():
            return []
        out = []
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith("_") or not (entry / "state.json").is_file():
                continue
            out.append(entry.name)
            with contextlib.suppress(OSError):
                self._rotate_console(entry.name)
        return out

    async def get_available_resource(self) -> HostResources:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = os.statvfs(self.root)
        accel = await asyncio.to_thread(lambda: self.accel)
        version, version_text = await asyncio.to_thread(qemu_version, self.qemu_binary)
        model, vendor, flags = cpu_model()
        cpus = os.cpu_count() or 1
        return HostResources(
            vcpus=cpus, memory_mb=meminfo_mb(),
            local_gb=(st.f_blocks * st.f_frsize) // GiB,
            hypervisor_type="QEMU", hypervisor_version=version,
            hypervisor_hostname=self.host,
            cpu_info={"arch": os.uname().machine, "model": model, "vendor": vendor,
                      "accel": accel, "qemu_version": version_text,
                      "topology": {"sockets": 1, "cores": cpus, "threads": 1},
                      "features": sorted(f for f in flags if f in (
                          "vmx", "svm", "aes", "avx", "avx2", "sse4_2", "x2apic", "hypervisor"))},
        )

    # ------------------------------------------------------------------ disks
    def _cache_file(self, src: Path, image: dict[str, Any], kind: str) -> Path:
        """A host-wide cached copy of an image file (keyed by image id + checksum)."""
        if not src.is_file():
            raise DriverError(f"image file {src} does not exist")
        st = src.stat()
        checksum = str(image.get("checksum") or image.get("os_hash_value")
                       or f"{st.st_size}-{int(st.st_mtime)}")
        ident = re.sub(r"[^0-9A-Za-z-]", "", str(image.get("id") or src.name))[:64] or "image"
        key = hashlib.sha256(f"{kind}:{checksum}".encode()).hexdigest()[:16]
        dest = self.base_dir / f"{ident}-{kind}-{key}"
        with self._base_lock:
            self.base_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            lock_path = self.base_dir / f".{dest.name}.lock"
            with open(lock_path, "w") as lock_fh:
                fcntl.flock(lock_fh, fcntl.LOCK_EX)
                if not dest.exists():
                    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}")
                    try:
                        os.link(src, tmp)
                    except OSError:
                        shutil.copyfile(src, tmp)
                    os.chmod(tmp, 0o400)
                    os.replace(tmp, dest)
        return dest

    @staticmethod
    def _image_info(path: Path) -> dict[str, Any]:
        info: dict[str, Any] = json.loads(
            run([QEMU_IMG, "info", "-U", "--output=json", os.fspath(path)]))
        return info

    def _make_root_disk(self, disk: Path, image: dict[str, Any], root_gb: int) -> None:
        path = image.get("path")
        if path:
            base = self._cache_file(Path(path), image, "disk")
            info = self._image_info(base)
            fmt = str(info.get("format") or image.get("disk_format") or "raw")
            if fmt not in ("raw", "qcow2"):
                raise DriverError(f"disk format {fmt} is not supported (raw, qcow2)")
            run([QEMU_IMG, "create", "-q", "-f", "qcow2", "-b", os.fspath(base), "-F", fmt,
                  os.fspath(disk)])
            if root_gb and root_gb * GiB > int(info.get("virtual-size") or 0):
                run([QEMU_IMG, "resize", "-q", os.fspath(disk), f"{root_gb}G"])
        else:
            # Kernel/ramdisk-only image (e.g. the test guest): an empty root disk.
            size = f"{root_gb}G" if root_gb else "64M"
            run([QEMU_IMG, "create", "-q", "-f", "qcow2", os.fspath(disk), size])
        os.chmod(disk, 0o600)

    def _make_flavor_disks(self, uuid: str, flavor: dict[str, Any]) -> None:
        """The flavor's ephemeral (``disk.local``, ``ephemeral_gb``) and swap
        (``disk.swap``, ``swap`` MiB) disks: thin qcow2, unformatted, made or grown to the
        flavor's sizes (never shrunk), as Nova's libvirt driver attaches them after the
        root disk."""
        d = self._dir(uuid)
        for name, size in (("disk.local", int(flavor.get("ephemeral_gb") or 0) * GiB),
                           ("disk.swap", int(flavor.get("swap") or 0) << 20)):
            disk = d / name
            if size <= 0:
                continue
            if not disk.exists():
                run([QEMU_IMG, "create", "-q", "-f", "qcow2", os.fspath(disk), str(size)])
                os.chmod(disk, 0o600)
            elif size > int(self._image_info(disk).get("virtual-size") or 0):
                run([QEMU_IMG, "resize", "-q", os.fspath(disk), str(size)])

    def _resolve_image(self, image: dict[str, Any]) -> dict[str, Any]:
        """Fill ``path``/``kernel_path``/``ramdisk_path`` the agent left out from the local
        image store (``DATA/images/<id>``, the file store of an all-in-one host)."""
        image = dict(image)
        props = image.get("properties") or {}
        store = self.data_dir / "images"
        if not image.get("path") and image.get("id") and (store / str(image["id"])).is_file():
            image["path"] = os.fspath(store / str(image["id"]))
        for key, prop in (("kernel_path", "kernel_id"), ("ramdisk_path", "ramdisk_id")):
            ref = props.get(prop)
            if not image.get(key) and ref and (store / str(ref)).is_file():
                image[key] = os.fspath(store / str(ref))
        return image

    def _boot_files(self, image: dict[str, Any]) -> dict[str, str]:
        props = image.get("properties") or {}
        out: dict[str, str] = {}
        for kind, key, prop in (("kernel", "kernel_path", "kernel_id"),
                                ("ramdisk", "ramdisk_path", "ramdisk_id")):
            path = image.get(key)
            if path:
                cached = self._cache_file(Path(path), {"id": props.get(prop) or kind,
                                                       "checksum": image.get(f"{kind}_checksum")},
                                          kind)
                out[kind] = os.fspath(cached)
            elif props.get(prop):
                raise DriverError(f"image {image.get('id')} needs its {prop} "
                                  f"({props[prop]}) but the spec has no image.{key}")
        if out.get("ramdisk") and not out.get("kernel"):
            raise DriverError("a ramdisk needs a kernel")
        if out.get("kernel"):
            out["cmdline"] = str(props.get("os_command_line") or DEFAULT_KERNEL_CMDLINE)
        return out

    # ------------------------------------------------------------------ NICs
    def _ports(self, spec: InstanceSpec) -> list[dict[str, Any]]:
        return ports_of(spec)

    # ------------------------------------------------------------------ QEMU process
    def _argv(self, uuid: str, state: dict[str, Any], incoming: bool = False,
              vnc_display: int = 0) -> list[str]:
        spec = state["spec"]
        d = self._dir(uuid)
        flavor = spec.get("flavor") or {}
        image = spec.get("image") or {}
        props = image.get("properties") or {}
        boot = state.get("boot") or {}
        rescue = state.get("rescue")
        if rescue is not None:
            boot = rescue.get("boot") or {}
        accel = self.accel
        vcpus = max(1, int(flavor.get("vcpus") or 1))
        memory = max(64, int(flavor.get("memory_mb") or 256))
        machine = str(props.get("hw_machine_type") or "q35")
        name = re.sub(r"[^0-9A-Za-z_.-]", "_", str(spec.get("name") or uuid))[:64]
        argv = [
            self.qemu_binary, "-name", f"guest={name}", "-uuid", uuid,
            "-machine", f"{machine},accel={accel}",
            "-cpu", "host" if accel == "kvm" else "max",
            "-m", str(memory), "-smp", str(vcpus),
            "-nodefaults", "-no-user-config", "-display", "none",
            "-sandbox", SANDBOX,
            "-chardev", f"socket,id=qmp,path={self._sock(uuid, 'qmp.sock')},server=on,wait=off",
            "-mon", "chardev=qmp,mode=control",
            "-chardev", f"file,id=serial0,path={d / 'console.log'},append=on",
            "-serial", "chardev:serial0",
            "-vnc", f"127.0.0.1:{vnc_display}",
            "-pidfile", os.fspath(d / "qemu.pid"),
            "-rtc", "base=utc",
            "-msg", "timestamp=on",
        ]
        if boot.get("kernel"):
            if QBOOT.exists():
                argv += ["-bios", os.fspath(QBOOT)]
            argv += ["-kernel", boot["kernel"], "-append", boot.get("cmdline") or
                     DEFAULT_KERNEL_CMDLINE]
            if boot.get("ramdisk"):
                argv += ["-initrd", boot["ramdisk"]]
        volumes = list(spec.get("block_devices") or [])
        root = [b for b in volumes if b.get("boot_index") == 0]
        # Stable device rescue (the rescue image names hw_rescue_bus/device): the guest's
        # disks keep their places and the rescue disk comes last; otherwise the rescue disk
        # is first and the guest's own disks follow.
        stable = (rescue or {}).get("stable")
        legacy = rescue is not None and not stable
        if root and not legacy:  # volume-backed: the root volume is the first disk
            argv += self.disks.argv(root, {})
        disks = [d / "disk.rescue", d / "disk"] if legacy else [d / "disk"]
        disks += [d / "disk.local", d / "disk.swap"]
        for n, disk in enumerate(disks):
            if not disk.exists():
                continue
            argv += ["-drive", f"file={disk},if=none,id=disk{n},format=qcow2,cache=writeback,"
                               "discard=unmap",
                     "-device", f"virtio-blk-pci,drive=disk{n}"
                     + (",bootindex=1" if n == 0 and not stable else "")]
        if stable and (d / "disk.rescue").exists():
            argv += rescue_device_argv(d / "disk.rescue", stable["bus"], stable["device"])
        if (d / "config.iso").exists():
            argv += ["-drive", f"file={d / 'config.iso'},if=none,id=config,format=raw,"
                               "readonly=on",
                     "-device", "virtio-blk-pci,drive=config"]
        argv += self.nics.argv(self._ports(spec), machine, state.get("nic_slots") or {},
                               int(state.get("root_ports") or LEGACY_SLOTS))
        argv += self.disks.argv([b for b in volumes if b.get("boot_index") != 0 or legacy],
                                state.get("disk_slots") or {})
        if incoming:
            argv += ["-incoming", "defer"]
        return argv

    async def _start(self, uuid: str, state: dict[str, Any], incoming: bool = False) -> None:
        d = self._dir(uuid)
        if self._pid(uuid) is not None:
            return
        for stale in ("qemu.pid", "qmp.sock"):
            with contextlib.suppress(OSError):
                (d / stale).unlink()
        await asyncio.to_thread(self.nics.plug, self._ports(state["spec"]))
        await self.nics.wait_plugged(self._ports(state["spec"]))
        for attempt in range(4):
            try:
                await self._launch(uuid, state, incoming, free_vnc_display(uuid))
                return
            except DriverError as exc:
                # Another process took the VNC port between our check and QEMU's bind.
                if "VNC" not in str(exc) or attempt == 3:
                    raise

    async def _launch(self, uuid: str, state: dict[str, Any], incoming: bool,
                      vnc_display: int) -> None:
        d = self._dir(uuid)
        argv = self._argv(uuid, state, incoming, vnc_display)
        log = open(d / "qemu.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    cwd=d, start_new_session=True, close_fds=True)
        except OSError as exc:
            raise DriverError(f"cannot start QEMU: {exc}") from exc
        finally:
            log.close()
        self._children[uuid] = proc
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30.0
        while loop.time() < deadline:
            if proc.poll() is not None:
                self._children.pop(uuid, None)
                raise DriverError(f"QEMU exited ({proc.returncode}): {self._qemu_error(uuid)}")
            if (d / "qemu.pid").exists():
                try:
                    async with QMPClient(self._sock(uuid, "qmp.sock"), 2.0) as qmp:
                        await qmp.execute("query-status")
                    return
                except QMPError:
                    pass
            await asyncio.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise DriverError("QEMU did not come up within 30 s")

    def _qemu_error(self, uuid: str) -> str:
        try:
            text = (self._dir(uuid) / "qemu.log").read_text(errors="replace")
        except OSError:
            return "no log"
        lines = [ln for ln in text.splitlines() if ln and not ln.startswith("--- ")]
        return "; ".join(lines[-3:])[-500:] or "no error message"

    async def _qmp(self, uuid: str, command: str, arguments: dict[str, Any] | None = None,
                   timeout: float = 10.0) -> Any:
        async with QMPClient(self._sock(uuid, "qmp.sock"), timeout) as qmp:
            try:
                return await qmp.execute(command, arguments)
            except QMPError as exc:
                # QEMU may close the socket before it answers ``quit``.
                if command == "quit" and exc.error_class == "Disconnected":
                    return None
                raise

    async def _status(self, uuid: str) -> str | None:
        """QEMU's run state, or None when no QEMU runs for the guest."""
        if self._pid(uuid) is None:
            return None
        try:
            result = await self._qmp(uuid, "query-status", timeout=5.0)
        except QMPError:
            return "unknown" if self._pid(uuid) is not None else None
        return str(result.get("status"))

    async def _wait_exit(self, uuid: str, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._pid(uuid) is None:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)

    async def _stop(self, uuid: str, timeout: float = 0.0) -> None:
        """Stop the guest's QEMU: ACPI power button for ``timeout`` s, then quit, then kill."""
        if self._pid(uuid) is None:
            return
        if timeout > 0:
            with contextlib.suppress(QMPError):
                status = await self._status(uuid)
                if status == "running":
                    await self._qmp(uuid, "system_powerdown")
                    if await self._wait_exit(uuid, timeout):
                        return
        with contextlib.suppress(QMPError):
            await self._qmp(uuid, "quit", timeout=3.0)
        if await self._wait_exit(uuid, 3.0):
            return
        pid = self._pid(uuid)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not await self._wait_exit(uuid, 5.0):
            raise DriverError(f"QEMU of {uuid} does not die")

    # ------------------------------------------------------------------ contract
    async def spawn(self, instance: InstanceSpec) -> None:
        uuid = instance["uuid"]
        async with self._lock(uuid):
            d = self._dir(uuid)
            if self._pid(uuid) is not None:
                raise DriverError(f"instance {uuid} is already running on {self.host}")
            if d.exists():
                await asyncio.to_thread(shutil.rmtree, d, True)
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            d.mkdir(mode=0o700)
            spec = {k: v for k, v in instance.items() if k != "admin_pass"}
            state: dict[str, Any] = {"spec": spec, "rescue": None, "created_at": time.time(),
                                     "root_ports": HOTPLUG_SLOTS}
            for bdm in spec.get("block_devices") or []:  # slots, so they can be unplugged
                if bdm.get("boot_index") == 0:
                    continue  # the root volume stays on the root bus, first
                slot = self._free_slot(state)
                if slot:
                    state.setdefault("disk_slots", {})[str(bdm["volume_id"])] = slot
            await asyncio.to_thread(self._prepare_disks, uuid, instance, state)
            self._save_state(uuid, state)
            await self._start(uuid, state)

    def _prepare_disks(self, uuid: str, instance: InstanceSpec, state: dict[str, Any]) -> None:
        d = self._dir(uuid)
        image = self._resolve_image(instance.get("image") or {})
        state["spec"]["image"] = image
        state["boot"] = self._boot_files(image)
        root_gb = int((instance.get("flavor") or {}).get("root_gb") or 0)
        if not any(b.get("boot_index") == 0 for b in instance.get("block_devices") or []):
            self._make_root_disk(d / "disk", image, root_gb)  # not volume-backed
        self._make_flavor_disks(uuid, instance.get("flavor") or {})
        if instance.get("config_drive") or self.force_config_drive:
            build_config_drive(d / "config.iso", instance)
        (d / "console.log").touch(mode=0o600)

    async def destroy(self, instance: InstanceSpec) -> None:
        uuid = instance["uuid"]
        try:
            d = self._dir(uuid)
        except InstanceNotFound:
            return
        async with self._lock(uuid):
            try:
                spec = self._load_state(uuid)["spec"]
            except InstanceNotFound:
                spec = instance
            await self._stop(uuid, 0)
            child = self._children.pop(uuid, None)
            if child is not None:
                with contextlib.suppress(Exception):
                    child.wait(timeout=1)
            await asyncio.to_thread(self.nics.unplug, self._ports(spec))
            await asyncio.to_thread(shutil.rmtree, d, True)
            self._drop_sock_link(uuid)
        self._locks.pop(uuid, None)

    async def get_info(self, instance: InstanceSpec) -> PowerState:
        uuid = instance["uuid"]
        self._load_state(uuid)
        status = await self._status(uuid)
        if status is None:
            # Suspended (memory saved in suspend.state) or stopped: no process, SHUTDOWN
            # either way, as libvirt reports a managed-saved domain (Nova shows power_state
            # 4 for a SUSPENDED server). SUSPENDED is the guest's own ACPI S3 sleep.
            return PowerState.SHUTDOWN
        return _RUNSTATES.get(status, PowerState.NOSTATE)

    async def attach_interface(self, instance: InstanceSpec, port: dict[str, Any]) -> None:
        uuid = instance["uuid"]
        pid = str(port.get("port_id") or port.get("id"))
        async with self._lock(uuid):
            state = self._load_state(uuid)
            spec = state["spec"]
            if any(str(p.get("port_id") or p.get("id")) == pid for p in self._ports(spec)):
                return
            slots: dict[str, str] = state.setdefault("nic_slots", {})
            if (self._dir(uuid) / "suspend.state").exists() and self._pid(uuid) is None:
                raise DriverError(f"instance {uuid} is suspended")  # saved layout is fixed
            if self._pid(uuid) is not None:
                slot = self._free_slot(state)
                if slot is None:
                    raise DriverError(f"instance {uuid} has no free PCIe slot for another "
                                      "interface (a restart of the server frees them)")
                await asyncio.to_thread(self.nics.plug, [port])
                try:
                    await self.nics.wait_plugged([port])
                    await self.nics.hot_add(
                        lambda cmd, args=None: self._qmp(uuid, cmd, args), port, slot)
                except DriverError:
                    await asyncio.to_thread(self.nics.unplug, [port])
                    raise
                if slot:
                    slots[pid] = slot
            spec["networks"] = [*(spec.get("networks") or []), dict(port)]
            self._save_state(uuid, state)

    async def detach_interface(self, instance: InstanceSpec, port: dict[str, Any]) -> None:
        uuid = instance["uuid"]
        pid = str(port.get("port_id") or port.get("id"))
        async with self._lock(uuid):
            state = self._load_state(uuid)
            spec = state["spec"]
            if (self._dir(uuid) / "suspend.state").exists() and self._pid(uuid) is None:
                raise DriverError(f"instance {uuid} is suspended")
            if self._pid(uuid) is not None:
                await self.nics.hot_remove(
                    lambda cmd, args=None: self._qmp(uuid, cmd, args), port)
            await asyncio.to_thread(self.nics.unplug, [port])
            spec["networks"] = [p for p in spec.get("networks") or []
                                if str(p.get("port_id") or p.get("id")) != pid]
            (state.get("nic_slots") or {}).pop(pid, None)
            self._save_state(uuid, state)

    def _free_slot(self, state: dict[str, Any]) -> str | None:
        """A root port no hot-plugged NIC or volume holds ("" on the ``pc`` machine)."""
        props = (state["spec"].get("image") or {}).get("properties") or {}
        used = [*(state.get("nic_slots") or {}).values(),
                *(state.get("disk_slots") or {}).values()]
        return self.nics.free_slot(str(props.get("hw_machine_type") or "q35"), used,
                                   int(state.get("root_ports") or LEGACY_SLOTS))

    async def attach_volume(self, instance: InstanceSpec, volume: dict[str, Any]) -> None:
        uuid = instance["uuid"]
        vid = str(volume["volume_id"])
        async with self._lock(uuid):
            state = self._load_state(uuid)
            spec = state["spec"]
            if any(str(b.get("volume_id")) == vid for b in spec.get("block_devices") or []):
                return
            if (self._dir(uuid) / "suspend.state").exists() and self._pid(uuid) is None:
                raise DriverError(f"instance {uuid} is suspended")  # saved layout is fixed
            qemu_disks.blockdev(volume)  # refuses what QEMU could not open, before anything
            slot = self._free_slot(state)
            if self._pid(uuid) is not None:
                if slot is None:
                    raise DriverError(f"instance {uuid} has no free PCIe slot for another "
                                      "volume (detach a volume or interface first)")
                await self.disks.hot_add(
                    lambda cmd, args=None: self._qmp(uuid, cmd, args), volume, slot)
            if slot:
                state.setdefault("disk_slots", {})[vid] = slot
            keep = {k: volume.get(k) for k in ("volume_id", "device", "mode",
                                               "connection_info", "boot_index",
                                               "multiattach")}
            spec["block_devices"] = [*(spec.get("block_devices") or []), keep]
            self._save_state(uuid, state)

    async def detach_volume(self, instance: InstanceSpec, volume: dict[str, Any]) -> None:
        uuid = instance["uuid"]
        vid = str(volume["volume_id"])
        async with self._lock(uuid):
            state = self._load_state(uuid)
            spec = state["spec"]
            if (self._dir(uuid) / "suspend.state").exists() and self._pid(uuid) is None:
                raise DriverError(f"instance {uuid} is suspended")
            if self._pid(uuid) is not None:
                await self.disks.hot_remove(
                    lambda cmd, args=None: self._qmp(uuid, cmd, args), volume)
            spec["block_devices"] = [b for b in spec.get("block_devices") or []
                                     if str(b.get("volume_id")) != vid]
            (state.get("disk_slots") or {}).pop(vid, None)
            self._save_state(uuid, state)

    async def extend_volume(self, instance: InstanceSpec, volume: dict[str, Any],
                            new_size: int) -> None:
        uuid = instance["uuid"]
        async with self._lock(uuid):
            state = self._load_state(uuid)
            if not any(str(b.get("volume_id")) == str(volume["volume_id"])
                       for b in state["spec"].get("block_devices") or []):
                raise DriverError(f"volume {volume['volume_id']} is not attached")
            if self._pid(uuid) is not None:
                await self.disks.resize(lambda cmd, args=None: self._qmp(uuid, cmd, args),
                                        volume, new_size)

    async def pause_volume_io(self, instance: InstanceSpec, volume: dict[str, Any]) -> bool:
        """The guest's vCPUs stop (QEMU drains and flushes every disk on a stop), so the
        volume's file holds one point in time until ``resume_volume_io``."""
        uuid = instance["uuid"]
        async with self._lock(uuid):
            self._load_state(uuid)
            if await self._status(uuid) != "running":
                return False
            await self._qmp(uuid, "stop")
            return True

    async def resume_volume_io(self, instance: InstanceSpec, volume: dict[str, Any]) -> None:
        uuid = instance["uuid"]
        async with self._lock(uuid):
            self._load_state(uuid)
            if await self._status(uuid) == "paused":
                await self._qmp(uuid, "cont")

    async def power_off(self, instance: InstanceSpec, timeout: float = 0) -> None:
        uuid = instance["uuid"]
        async with self._lock(uuid):
            self._load_state(uuid)
            await self._stop(uuid, timeout)

    async def power_on(self, instance: InstanceSpec) -> None:
        uuid = instance["uuid"]
        async with self._lock(uuid):
            state = self._load_state(uuid)
            if (self._dir(uuid) / "suspend.state").exists() and self._pid(uuid) is None:
                await self._restore(uuid, state)
                return
            status = await self._status(uuid)
            if status is None:
                await self._start(uuid, state)
            elif status in ("paused", "shutdown", "postmigrate"):
                if status == "shutdown":
                    await self._qmp(uuid, "system_reset")
                await self._qmp(uuid, "cont")

    async def reboot(self, instance: InstanceSpec, hard: bool) -> None:
        uuid = instance["uuid"]
        async with self._lock(uuid):
            state = self._load_state(uuid)
            status = await self._status(uuid)
            if status is None:
                await self._start(uuid, state)
                return
            if hard:
                await self._qmp(uuid, "system_reset")
                if status != "running":
                    await self._qmp(uuid, "cont")
                return
            # Soft: ACPI power button, wait for the guest to power off, start it again
            # (a guest that ignores the button is stopped the hard way).
            await self._stop(uuid, self.soft_reboot_timeout if status == "running" else 0)
            await self._start(uuid, state)

    async def pause(self, instance: InstanceSpec) -> None:
        uuid = instance["uuid"]
        async with self._lock(uuid):
            self._load_state(uuid)
            if await self._status(uuid) is None:
                raise DriverError(f"instance {uuid} is not running")
            await self._qmp(uuid, "stop")

    async def unpause(self, instance: InstanceSpec) -> None:
        uuid = instance["uuid"]
        async with self._lock(uuid):
            self._load_state(uuid)
            if await self._status(uuid) is None:
                raise DriverError(f"instance {uuid} is not running")
            await self._qmp(uuid, "cont")

    async def suspend(self, instance: InstanceSpec) -> None:
        """Save the guest's memory to ``suspend.state`` (migration stream) and stop QEMU."""
        uuid = instance["uuid"]
        async with self._lock(uuid):
            self._load_state(uuid)
            if await self._status(uuid) is None:
                raise DriverError(f"instance {uuid} is not running")
            d = self._dir(uuid)
            target = d / "suspend.state"
            tmp = d / "suspend.state.tmp"
            sock = self._sock(uuid, "save.sock")
            with contextlib.suppress(OSError):
                os.unlink(sock)
            received = asyncio.get_running_loop().create_future()

            async def receive(reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
                try:
                    with open(tmp, "wb") as fh:
                        while chunk := await reader.read(1 << 20):
                            fh.write(chunk)
                        fh.flush()
                        os.fsync(fh.fileno())
                    if not received.done():
                        received.set_result(True)
                except Exception as exc:  # noqa: BLE001
                    if not received.done():
                        received.set_exception(exc)
                finally:
                    writer.close()

            server = await asyncio.start_unix_server(receive, sock)
            try:
                async with QMPClient(self._sock(uuid, "qmp.sock"), 10.0) as qmp:
                    await qmp.execute("migrate-set-parameters",
                                      {"max-bandwidth": 8 << 30, "downtime-limit": 2000})
                    await qmp.execute("migrate", {"uri": f"unix:{sock}"})
                    await self._wait_migration(qmp, 300.0)
                await asyncio.wait_for(received, 60.0)
                os.replace(tmp, target)
                await self._qmp(uuid, "quit")
                await self._wait_exit(uuid, 10.0)
            except Exception as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                with contextlib.suppress(QMPError):
                    await self._qmp(uuid, "cont")
                raise DriverError(f"suspend of {uuid} failed: {exc}") from exc
            finally:
                server.close()
                with contextlib.suppress(OSError):
                    os.unlink(sock)

    @staticmethod
    async def _wait_migration(qmp: QMPClient, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            info = await qmp.execute("query-migrate")
            status = info.get("status")
            if status == "completed":
                return
            if status in ("failed", "cancelled"):
                raise DriverError(f"migration {status}: {info.get('error-desc', '')}")
            await asyncio.sleep(0.05)
        raise DriverError("migration did not finish in time")

    async def _restore(self, uuid: str, state: dict[str, Any]) -> None:
        d = self._dir(uuid)
        saved = d / "suspend.state"
        await self._start(uuid, state, incoming=True)
        sock = self._sock(uuid, "incoming.sock")
        with contextlib.suppress(OSError):
            os.unlink(sock)
        try:
            async with QMPClient(self._sock(uuid, "qmp.sock"), 10.0) as qmp:
                await qmp.execute("migrate-incoming", {"uri": f"unix:{sock}"})
                _reader, writer = await asyncio.open_unix_connection(sock)
                with open(saved, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        writer.write(chunk)
                        await writer.drain()
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 120.0
                while loop.time() < deadline:
                    status = (await qmp.execute("query-status")).get("status")
                    if status != "inmigrate":
                        break
                    await asyncio.sleep(0.05)
                if status in ("paused", "postmigrate", "prelaunch"):
                    await qmp.execute("cont")
                elif status != "running":
                    raise DriverError(f"restored guest is {status}")
        except Exception as exc:
            with contextlib.suppress(Exception):
                await self._stop(uuid, 0)
            raise DriverError(f"resume of {uuid} failed: {exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                os.unlink(sock)
        saved.unlink()

    async def resume(self, instance: InstanceSpec) -> None:
        uuid = instance["uuid"]
        async with self._lock(uuid):
            state = self._load_state(uuid)
            if not (self._dir(uuid) / "suspend.state").exists():
                if self._pid(uuid) is None:
                    raise DriverError(f"instance {uuid} is not suspended")
                return
            await self._restore(uuid, state)

    async def rescue(self, instance: InstanceSpec, rescue_image: dict[str, Any]) -> None:
        """Boot from ``rescue_image`` (a spec image dict; default: the instance's own image)
        with the instance's disk attached second; a rescue image with ``hw_rescue_bus``/
        ``hw_rescue_device`` gets Nova's stable device rescue (the guest's disks, its root
        volume included, stay where they are; the rescue disk is added on that bus)."""
        uuid = instance["uuid"]
        async with self._lock(uuid):
            state = self._load_state(uuid)
            image = self._resolve_image(rescue_image or {})
            if not image.get("path") and not image.get("kernel_path"):
                image = state["spec"].get("image") or {}  # default: the instance's image
            d = self._dir(uuid)
            props = image.get("properties") or {}
            stable = None
            if props.get("hw_rescue_bus") or props.get("hw_rescue_device"):
                stable = {"bus": str(props.get("hw_rescue_bus") or "virtio"),
                          "device": str(props.get("hw_rescue_device") or "disk")}
                rescue_device_argv(d / "disk.rescue", stable["bus"], stable["device"])
            await self._stop(uuid, 0)

            def prepare() -> dict[str, Any]:
                boot = self._boot_files(image)
                if image.get("path") or stable:
                    self._make_root_disk(d / "disk.rescue", image, 0)
                return boot

            boot = await asyncio.to_thread(prepare)
            state["rescue"] = {"image": {k: image.get(k) for k in ("id", "path")}, "boot": boot,
                               "stable": stable}
            self._save_state(uuid, state)
            await self._start(uuid, state)

    async def unrescue(self, instance: InstanceSpec) -> None:
        uuid = instance["uuid"]
        async with self._lock(uuid):
            state = self._load_state(uuid)
            await self._stop(uuid, 0)
            with contextlib.suppress(OSError):
                (self._dir(uuid) / "disk.rescue").unlink()
            state["rescue"] = None
            self._save_state(uuid, state)
            await self._start(uuid, state)

    async def migrate_disk_and_power_off(self, instance: InstanceSpec, dest_host: str,
                                         new_flavor: dict[str, Any]) -> None:
        uuid = instance["uuid"]
        if dest_host != self.host:
            raise DriverError("the QEMU driver resizes on the same host only "
                              "(no shared storage for cold migration)")
        async with self._lock(uuid):
            self._load_state(uuid)
            await self._stop(uuid, min(self.soft_reboot_timeout, 30.0))

    async def _restart_with_flavor(self, instance: InstanceSpec) -> None:
        uuid = instance["uuid"]
        async with self._lock(uuid):
            state = self._load_state(uuid)
            await self._stop(uuid, 0)
            flavor = dict(instance.get("flavor") or state["spec"].get("flavor") or {})
            state["spec"]["flavor"] = flavor
            root_gb = int(flavor.get("root_gb") or 0)
            disk = self._dir(uuid) / "disk"
            if root_gb and disk.exists():  # a volume-backed guest has no local root disk
                info = await asyncio.to_thread(self._image_info, disk)
                if root_gb * GiB > int(info.get("virtual-size") or 0):
                    await asyncio.to_thread(run, [QEMU_IMG, "resize", "-q", os.fspath(disk),
                                                   f"{root_gb}G"])
            await asyncio.to_thread(self._make_flavor_disks, uuid, flavor)
            self._save_state(uuid, state)
            await self._start(uuid, state)

    async def finish_migration(self, instance: InstanceSpec, resize_instance: bool) -> None:
        """Start the guest on its new flavor (disk grown to the new root_gb, never shrunk)."""
        if (self.root / instance["uuid"] / "state.json").exists():
            await self._restart_with_flavor(instance)
        else:
            await self.spawn(instance)

    async def finish_revert_migration(self, instance: InstanceSpec) -> None:
        """Restart on the old flavor (a grown disk stays grown, as qcow2 cannot shrink)."""
        await self.finish_migration(instance, False)

    async def snapshot(self, instance: InstanceSpec) -> str:
        """A standalone qcow2 of the root disk (a running guest is paused while copying)."""
        uuid = instance["uuid"]
        async with self._lock(uuid):
            self._load_state(uuid)
            d = self._dir(uuid)
            out = d / f"snapshot-{secrets.token_hex(6)}.qcow2"
            status = await self._status(uuid)
            paused_here = False
            if status == "running":
                await self._qmp(uuid, "stop")  # flushes the guest's disk writes
                paused_here = True
            try:
                await asyncio.to_thread(run, [QEMU_IMG, "convert", "-U", "-O", "qcow2",
                                               os.fspath(d / "disk"), os.fspath(out)])
            finally:
                if paused_here:
                    with contextlib.suppress(QMPError):
                        await self._qmp(uuid, "cont")
            return os.fspath(out)

    # ------------------------------------------------------------------ consoles
    def _rotate_console(self, uuid: str) -> None:
        log = self._dir(uuid) / "console.log"
        if log.stat().st_size <= self.console_log_limit:
            return
        # QEMU appends (O_APPEND): copy the log aside, then truncate it in place.
        shutil.copyfile(log, log.with_suffix(".log.0"))
        os.truncate(log, 0)

    async def get_console_output(self, instance: InstanceSpec) -> str:
        uuid = instance["uuid"]
        self._load_state(uuid)
        d = self._dir(uuid)
        with contextlib.suppress(OSError):
            self._rotate_console(uuid)
        data = b""
        for name in ("console.log.0", "console.log"):
            with contextlib.suppress(OSError):
                data += (d / name).read_bytes()
        return data[-2 * self.console_log_limit:].decode(errors="replace")

    async def get_vnc_console(self, instance: InstanceSpec) -> dict[str, Any]:
        """Where the guest's VNC server listens: ``{"host": "127.0.0.1", "port": 59xx}``
        (loopback only; the console proxy connects to it)."""
        uuid = instance["uuid"]
        self._load_state(uuid)
        if self._pid(uuid) is None:
            raise DriverError(f"instance {uuid} is not running")
        info = await self._qmp(uuid, "query-vnc")
        if not info.get("enabled"):
            raise DriverError("the guest has no VNC server")
        return {"host": info.get("host") or "127.0.0.1", "port": int(info["service"])}

    async def get_diagnostics(self, instance: InstanceSpec) -> dict[str, Any]:
        """Nova's standard diagnostics, read off the running guest.

        ``driver`` is ``libvirt``: the API's field is an enumeration of Nova's driver
        families and this driver is the QEMU/KVM family (clients validate the name);
        ``hypervisor`` says what actually runs (``kvm`` or ``qemu`` for TCG), as Nova's
        libvirt driver reports its ``virt_type``. Per-vCPU times come from the vCPU threads
        (QMP ``query-cpus-fast`` + ``/proc``), disk counters from ``query-blockstats``, NIC
        counters from the tap devices, seen from the guest's side.
        """
        uuid = instance["uuid"]
        state = self._load_state(uuid)
        flavor = state["spec"].get("flavor") or {}
        power = await self.get_info(instance)
        pid = self._pid(uuid)
        rss_kb = 0
        if pid is not None:
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        rss_kb = int(line.split()[1])
        d = self._dir(uuid)
        ports = self._ports(state["spec"])
        cpus: list[dict[str, Any]] = []
        disks: list[dict[str, Any]] = []
        if pid is not None:
            with contextlib.suppress(QMPError, OSError, asyncio.TimeoutError):
                for cpu in await self._qmp(uuid, "query-cpus-fast", timeout=5.0) or []:
                    cpus.append({"id": int(cpu.get("cpu-index", len(cpus))),
                                 "time": thread_cpu_ns(pid, cpu.get("thread-id")),
                                 "utilisation": None})
            with contextlib.suppress(QMPError, OSError, asyncio.TimeoutError):
                for dev in await self._qmp(uuid, "query-blockstats", timeout=5.0) or []:
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
                "hypervisor": "kvm" if self.accel == "kvm" else "qemu",
                "hypervisor_os": "linux",
                "num_cpus": int(flavor.get("vcpus") or 1),
                "memory_details": {"maximum": int(flavor.get("memory_mb") or 0),
                                   "used": rss_kb // 1024},
                "uptime": int(time.time() - (d / "qemu.pid").stat().st_mtime) if pid else 0,
                "config_drive": has_iso, "num_nics": len(ports),
                "num_disks": len(disks) if disks else 1 + int(has_iso),
                "cpu_details": cpus, "nic_details": nics, "disk_details": disks}


def driver_options(settings: Any) -> dict[str, Any]:
    """``QemuDriver`` keyword options from the onestack ``Settings``."""
    return {"data_dir": settings.data_dir,
            "accel": getattr(settings, "compute_qemu_accel", "auto"),
            "force_config_drive": getattr(settings, "compute_force_config_drive", False)}
