"""Facts of the host QEMU runs on and the processes it starts: which binaries exist, the
QEMU version, CPU and memory, whether a pid is a live guest, a free VNC display, each
thread's CPU time, and whether KVM really works (a time-boxed probe, cached per QEMU build)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from onestack.drivers.hypervisor.base import DriverError

LOG = logging.getLogger(__name__)

QEMU_BINARY = "qemu-system-x86_64"
QEMU_IMG = "qemu-img"
#: Minimal firmware that boots ``-kernel`` much faster than SeaBIOS (Debian's qemu-system-data).
QBOOT = Path("/usr/share/qemu/qboot.rom")
GiB = 1 << 30
#: Kernel command line for AKI/ARI images without an ``os_command_line`` property.
DEFAULT_KERNEL_CMDLINE = "root=/dev/vda console=tty0 console=ttyS0"
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

def available() -> bool:
    """Whether QEMU (system emulator and qemu-img) is installed here."""
    return shutil.which(QEMU_BINARY) is not None and shutil.which(QEMU_IMG) is not None


def run(argv: list[str], timeout: float = 600.0) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DriverError(f"{argv[0]} failed: {exc}") from exc
    if proc.returncode != 0:
        raise DriverError(f"{' '.join(argv[:3])}… failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def qemu_version(binary: str) -> tuple[int, str]:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0, "unknown"
    match = re.search(r"version (\d+)\.(\d+)\.(\d+)", out)
    if not match:
        return 0, "unknown"
    major, minor, micro = (int(x) for x in match.groups())
    return major * 1_000_000 + minor * 1_000 + micro, f"{major}.{minor}.{micro}"


def cpu_model() -> tuple[str, str, list[str]]:
    model, vendor, flags = "unknown", "unknown", []
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model == "unknown":
                model = value.strip()
            elif key == "vendor_id" and vendor == "unknown":
                vendor = value.strip()
            elif key == "flags" and not flags:
                flags = value.split()
    return model, vendor, flags


def meminfo_mb() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 0


def _socket_link_dirs() -> tuple[Path, Path]:
    return Path("/run/onestack/s"), Path(tempfile.gettempdir()) / "onestack-s"


def socket_path(instance_dir: Path, name: str) -> str:
    """Path of unix socket ``name`` of an instance dir, short enough for ``sun_path`` (a
    long data dir is reached through a short symlink named by the dir's digest)."""
    full = instance_dir / name
    if len(os.fsencode(full)) < 100:
        return os.fspath(full)
    digest = hashlib.sha256(os.fsencode(instance_dir)).hexdigest()[:20]
    run, tmpdir = _socket_link_dirs()
    link_dir = run if os.access("/run", os.W_OK) else tmpdir
    link_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    link = link_dir / digest
    if not link.is_symlink() or os.readlink(link) != os.fspath(instance_dir):
        tmp = link_dir / f".{digest}.{secrets.token_hex(4)}"
        os.symlink(instance_dir, tmp)
        os.replace(tmp, link)
    return os.fspath(link / name)


def drop_socket_link(instance_dir: Path) -> None:
    """Remove the short symlink ``socket_path`` may have made for ``instance_dir``."""
    digest = hashlib.sha256(os.fsencode(instance_dir)).hexdigest()[:20]
    for base in _socket_link_dirs():
        with contextlib.suppress(OSError):
            (base / digest).unlink()


def pid_alive(pid: int, uuid: str) -> bool:
    """Whether ``pid`` is a live (not zombie) QEMU of guest ``uuid``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else "?"
    return state not in ("Z", "X") and uuid.encode() in cmdline


_VNC_LOCK = threading.Lock()


def free_vnc_display(uuid: str) -> int:
    """A VNC display number (port 5900 + N) free on 127.0.0.1 right now."""
    start = int(hashlib.sha256(uuid.encode()).hexdigest()[:6], 16) % 1000
    with _VNC_LOCK:
        for n in range(1000):
            display = (start + n) % 1000
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind(("127.0.0.1", 5900 + display))
                except OSError:
                    continue
            return display
    raise DriverError("no free VNC port in 5900-6899")


def thread_cpu_ns(pid: int, tid: Any) -> int | None:
    """CPU time (user + system) of one thread of ``pid`` in nanoseconds, None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/task/{int(tid)}/stat").read_text()
    except (OSError, TypeError, ValueError):
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


class KvmProbe:
    """Whether KVM really runs guests here: boot a tiny guest under it, time-boxed.

    Nested KVM on some clouds accepts every ioctl and then never runs the vCPU, so opening
    /dev/kvm proves nothing. The probe boots the test guest kernel (when built) without a
    root file system and ``panic=-1``: under working KVM it panics and QEMU exits
    (``-no-reboot``) in well under a second; without a kernel, a 64 KiB firmware that
    writes to ``isa-debug-exit``. The answer is cached per host boot and QEMU build in
    ``DATA/instances/_accel.json``. A firmware-only "KVM works" is provisional: some nested
    KVM runs that firmware and then hangs a Linux guest, so once a guest kernel is at hand
    (the test guest built on a first start) the probe is made again with it.
    """

    _lock = threading.Lock()
    #: key -> (accel, whether a kernel was booted to decide it)
    _memo: dict[str, tuple[str, bool]] = {}

    @staticmethod
    def _key(binary: str) -> str:
        boot_id = ""
        with contextlib.suppress(OSError):
            boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        path = shutil.which(binary) or binary
        mtime = 0.0
        with contextlib.suppress(OSError):
            mtime = os.stat(path).st_mtime
        return f"{boot_id}:{path}:{mtime}"

    @classmethod
    def accel(cls, binary: str, cache_file: Path, timeout: float) -> str:
        """``kvm`` or ``tcg`` (see the class docstring)."""
        return cls.verdict(binary, cache_file, timeout)[0]

    @classmethod
    def verdict(cls, binary: str, cache_file: Path, timeout: float) -> tuple[str, bool]:
        """(``kvm`` or ``tcg``, whether it is final: decided with a kernel, or ``tcg``)."""
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            return "tcg", True
        key = cls._key(binary)
        kernel = cls._kernel(cache_file)
        with cls._lock:
            known = cls._memo.get(key)
            if known is None:
                with contextlib.suppress(OSError, ValueError):
                    cached = json.loads(cache_file.read_text())
                    if cached.get("key") == key and cached.get("accel") in ("kvm", "tcg"):
                        known = (str(cached["accel"]), bool(cached.get("kernel", True)))
            if known is not None and (known[0] == "tcg" or known[1] or kernel is None):
                cls._memo[key] = known
                return known[0], known[0] == "tcg" or known[1]
            accel = "kvm" if cls._probe(binary, timeout, kernel) else "tcg"
            cls._memo[key] = (accel, kernel is not None)
            with contextlib.suppress(OSError):
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                cache_file.write_text(json.dumps({"key": key, "accel": accel,
                                                  "kernel": kernel is not None,
                                                  "probed_at": time.time()}))
            LOG.info("KVM probe%s: using %s", "" if kernel else " (firmware only)", accel)
            return accel, accel == "tcg" or kernel is not None

    @staticmethod
    def _kernel(cache_file: Path) -> Path | None:
        """A test guest kernel to boot: in the guest image cache of this data dir
        (``DATA/cache/guest-image``) or the default one."""
        with contextlib.suppress(Exception):
            from onestack.guestimage import default_output_dir, image_version

            data = cache_file.parent.parent
            for d in (data / "cache" / "guest-image" / image_version(), default_output_dir()):
                for name in ("vmlinux", "vmlinuz"):
                    if (d / name).is_file():
                        return d / name
        return None

    @staticmethod
    def _probe(binary: str, timeout: float, kernel: Path | None) -> bool:
        with tempfile.TemporaryDirectory(prefix="onestack-kvm-probe-") as tmp:
            argv = [binary, "-machine", "q35,accel=kvm", "-cpu", "host", "-m", "64",
                    "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
                    "-no-reboot", "-monitor", "none"]
            if kernel is not None:
                log = Path(tmp) / "serial.log"
                argv += ["-serial", f"file:{log}", "-kernel", str(kernel),
                         "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent"]
                if QBOOT.exists() and kernel.name == "vmlinux":
                    argv += ["-bios", str(QBOOT)]
            else:
                rom = bytearray(b"\xf4" * 65536)
                code = bytes([0xB0, 0x01, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD])  # out 0xf4, 1; hlt
                rom[0xFFF0:0xFFF0 + len(code)] = code
                (Path(tmp) / "probe.rom").write_bytes(bytes(rom))
                argv += ["-serial", "none", "-bios", str(Path(tmp) / "probe.rom"),
                         "-device", "isa-debug-exit,iobase=0xf4,iosize=4"]
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True)
            except OSError:
                return False
            try:
                _out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                LOG.warning("KVM does not work here (a test guest did not boot within %.1f s): "
                            "guests run under TCG, slower", timeout)
                return False
            if kernel is not None:
                ok = proc.returncode == 0 and "Kernel panic" in (
                    (Path(tmp) / "serial.log").read_text(errors="replace")
                    if (Path(tmp) / "serial.log").exists() else "")
            else:
                ok = proc.returncode == 3
            if not ok:
                LOG.warning("KVM does not work here: guests run under TCG, slower")
                LOG.debug("KVM probe output: %s", err.decode(errors="replace").strip()[-500:])
            return ok
