"""Issue 5 "Done when": real QEMU guests driven by the real ``openstack`` CLI.

``onestack up --compute-driver qemu`` (its own data dir, free ports, the shared guest image
cache) boots the test guest through ``openstack server create … --wait``; every server action
must change the real QEMU process as expected (checked through the pid file, ``/proc`` and the
guest's QMP socket, not through the API): pause/unpause (QMP ``paused``/``running``, same
process), suspend/resume (no process + saved memory, then the same guest again), stop/start
(no process, then a new one that boots), soft/hard reboot, rescue/unrescue (rescue disk on the
command line), resize + confirm (new ``-m``/``-smp``). A snapshot boots as a new server. After
``kill -9`` of onestack the guest keeps running and the restarted onestack controls it again;
``server delete`` leaves no process, file or tap behind.

One guest is carried through all the checks (TCG boots take seconds each); root only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import VENV_BIN, RunningCloud, free_port, start_cloud

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="dataplane tests run as root only"),
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None
                       or shutil.which("qemu-img") is None,
                       reason="qemu-system-x86_64/qemu-img are not installed"),
    pytest.mark.skipif(shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None,
                       reason="the test guest is built from Debian packages"),
]

GUEST_IMAGE = "onestack-guest"
GUEST_FLAVOR = "m1.guest"
BOOT_TIMEOUT = 180.0  # TCG on a loaded 2-CPU runner
ACTION_TIMEOUT = 180.0
USER_DATA = '#!/bin/sh\necho "cli-user-data: $(hostname) {nonce}"\n'


# ---------------------------------------------------------------------------- helpers
def _qemu_pids(data_dir: Path) -> list[int]:
    """Pids of every QEMU whose command line mentions ``data_dir``."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"qemu-system" in cmdline and os.fsencode(data_dir) in cmdline:
            out.append(int(proc.name))
    return out


def _taps_of(data_dir: Path) -> list[str]:
    """Tap devices the guests under ``data_dir`` were given (from their state.json)."""
    from onestack.drivers.network.linux.names import tap as tap_name

    taps = []
    for state in (data_dir / "instances").glob("*/state.json"):
        with contextlib.suppress(OSError, ValueError):
            spec = json.loads(state.read_text())["spec"]
            for port in spec.get("networks") or []:
                taps.append(tap_name(str(port.get("port_id") or port.get("id"))))
    return taps


def _cleanup_host(data_dir: Path) -> None:
    """Kill what a failed run may have left: QEMU processes, taps, socket links."""
    taps = _taps_of(data_dir)
    for pid in _qemu_pids(data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for tap in taps:
        if Path(f"/sys/class/net/{tap}").exists():
            subprocess.run(["ip", "link", "del", "dev", tap], check=False, capture_output=True)
    with contextlib.suppress(Exception):
        from onestack.drivers.hypervisor.qemu import QemuDriver

        driver = QemuDriver("cleanup", data_dir=data_dir)
        for inst in (data_dir / "instances").iterdir():
            if not inst.name.startswith("_"):
                driver.guests.drop_sock_link(inst.name)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


class Guests:
    """Looks at the real guests of one data dir (pid file, /proc, QMP)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def dir(self, uuid: str) -> Path:
        return self.data_dir / "instances" / uuid

    def pid(self, uuid: str) -> int | None:
        try:
            pid = int((self.dir(uuid) / "qemu.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        if not _alive(pid):
            return None
        if uuid.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return None
        return pid

    def argv(self, uuid: str) -> list[str]:
        pid = self.pid(uuid)
        assert pid is not None, f"{uuid} has no QEMU process"
        return [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]

    def option(self, uuid: str, name: str) -> str:
        argv = self.argv(uuid)
        return argv[argv.index(name) + 1]

    def qmp_status(self, uuid: str) -> str:
        from onestack.drivers.hypervisor.qemu import QemuDriver
        from onestack.drivers.hypervisor.qemu.qmp import QMPClient, QMPError

        sock = QemuDriver("probe", data_dir=self.data_dir).guests.sock(uuid, "qmp.sock")

        async def query() -> str:
            # The agent talks to the same monitor (one client at a time): retry briefly.
            for _ in range(50):
                try:
                    async with QMPClient(sock, 5.0) as qmp:
                        return str((await qmp.execute("query-status"))["status"])
                except QMPError:
                    await asyncio.sleep(0.1)
            raise AssertionError(f"QMP of {uuid} does not answer")

        return asyncio.run(query())

    def console(self, uuid: str) -> str:
        text = ""
        for name in ("console.log.0", "console.log"):
            with contextlib.suppress(OSError):
                text += (self.dir(uuid) / name).read_text(errors="replace")
        return text


class CLI:
    """``openstack`` against one cloud, with JSON output and waits."""

    def __init__(self, cloud: RunningCloud) -> None:
        self.cloud = cloud

    def run(self, *args: str, timeout: float = 300) -> str:
        env = self.cloud.os_env()
        res = subprocess.run([str(VENV_BIN / "openstack"), *args], env=env,
                             capture_output=True, text=True, timeout=timeout)
        assert res.returncode == 0, (f"openstack {' '.join(args)} failed ({res.returncode}):\n"
                                     f"{res.stdout}\n{res.stderr}\n--- onestack log tail:\n"
                                     f"{self.cloud.log()[-4000:]}")
        return res.stdout

    def json(self, *args: str, timeout: float = 300) -> Any:
        return json.loads(self.run(*args, "-f", "json", timeout=timeout))

    def show(self, name: str) -> dict[str, Any]:
        server = self.json("server", "show", name)
        assert isinstance(server, dict)
        return server

    def wait(self, name: str, status: str, timeout: float = ACTION_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            server = self.show(name)
            if server["status"] == status and not server.get("OS-EXT-STS:task_state"):
                return server
            assert server["status"] != "ERROR" or status == "ERROR", (
                f"{name} went to ERROR: {server.get('fault')}\n{self.cloud.log()[-4000:]}")
            assert time.monotonic() < deadline, (
                f"{name} is {server['status']}/{server.get('OS-EXT-STS:task_state')}, "
                f"not {status}\n{self.cloud.log()[-4000:]}")
            time.sleep(0.3)


def _wait_for(check: Any, what: str, timeout: float = BOOT_TIMEOUT, interval: float = 0.2,
              ) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


@pytest.fixture(scope="module")
def qemu_cloud() -> Iterator[tuple[RunningCloud, Path, dict[str, str], dict[str, int]]]:
    from onestack.guestimage import default_cache_dir

    tmp = Path(tempfile.mkdtemp(prefix="onestack-qcli-"))
    data_dir = tmp / "data"
    env = {
        # Share the guest image cache: it is built once per version, not once per cloud.
        "ONESTACK_GUEST_IMAGE_DIR": str(default_cache_dir()),
        "ONESTACK_METADATA_PORT": str(free_port()),
        "ONESTACK_CONSOLE_PORT": str(free_port()),
        # Reconcile often, so a power state the agent and driver disagree on would flap.
        "ONESTACK_COMPUTE_HEARTBEAT_INTERVAL": "1",
        "ONESTACK_COMPUTE_RECONCILE_INTERVAL": "2",
        "ONESTACK_LOG_LEVEL": "info",
    }
    holder: dict[str, RunningCloud] = {}
    try:
        holder["cloud"] = start_cloud(data_dir, env=env, wait=600,
                                      args=["--compute-driver", "qemu"])
        yield holder["cloud"], data_dir, env, holder["cloud"].ports
    finally:
        cloud = holder.get("cloud")
        if cloud is not None:
            cloud.stop()
        _cleanup_host(data_dir)
        shutil.rmtree(tmp, ignore_errors=True)


def _ready_count(guests: Guests, uuid: str, hostname: str) -> int:
    return guests.console(uuid).count(f"onestack-guest: {hostname} ready")


def test_openstack_cli_drives_real_qemu_guests(qemu_cloud: Any, tmp_path: Path) -> None:
    cloud, data_dir, env, ports = qemu_cloud
    cli = CLI(cloud)
    guests = Guests(data_dir)
    timings: dict[str, float] = {}

    def step(name: str) -> Any:
        @contextlib.contextmanager
        def timer() -> Iterator[None]:
            started = time.monotonic()
            yield
            timings[name] = round(time.monotonic() - started, 1)
        return timer()

    # The image and flavor `onestack up` registered for the guest.
    images = {i["Name"] for i in cli.json("image", "list")}
    assert GUEST_IMAGE in images, images
    assert GUEST_FLAVOR in {f["Name"] for f in cli.json("flavor", "list")}

    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMnUTl9yKbsLUjd2Ic4Z3pTJ0PCsBvQ3PmOl"
                   "dNQo8vsy onestack-cli-test\n")
    cli.run("keypair", "create", "--public-key", str(key), "mykey")
    nonce = os.urandom(6).hex()
    script = tmp_path / "script.sh"
    script.write_text(USER_DATA.format(nonce=nonce))

    # ---- create: ACTIVE, console shows the ready line and the user-data output
    with step("create+ready"):
        server = cli.json("server", "create", "--image", GUEST_IMAGE, "--flavor", GUEST_FLAVOR,
                          "--key-name", "mykey", "--user-data", str(script),
                          "--config-drive", "True", "--nic", "none", "vm1", "--wait")
        assert server["status"] == "ACTIVE", server
        uuid = server["id"]
        pid = guests.pid(uuid)
        assert pid is not None, "ACTIVE but no QEMU process"
        _wait_for(lambda: "onestack-guest: vm1 ready" in cli.run("console", "log", "show",
                                                                  "vm1"),
                  "the ready line in `openstack console log show`")
    log = cli.run("console", "log", "show", "vm1")
    assert f"cli-user-data: vm1 {nonce}" in log, log[-3000:]
    assert guests.option(uuid, "-m") == "256" and guests.option(uuid, "-smp") == "1"
    assert guests.qmp_status(uuid) == "running"
    assert cli.show("vm1")["OS-EXT-STS:power_state"] == 1

    # ---- pause / unpause: same process, vCPUs stopped
    with step("pause+unpause"):
        cli.run("server", "pause", "vm1")
        cli.wait("vm1", "PAUSED")
        assert guests.pid(uuid) == pid
        assert guests.qmp_status(uuid) == "paused"
        cli.run("server", "unpause", "vm1")
        cli.wait("vm1", "ACTIVE")
        assert guests.pid(uuid) == pid
        assert guests.qmp_status(uuid) == "running"

    # ---- suspend / resume: memory saved to disk, no process; then the same guest again
    with step("suspend+resume"):
        cli.run("server", "suspend", "vm1")
        server = cli.wait("vm1", "SUSPENDED")
        assert guests.pid(uuid) is None and _qemu_pids(data_dir) == []
        assert (guests.dir(uuid) / "suspend.state").stat().st_size > 0
        # Nova (libvirt managed save): a suspended guest's power state is Shutdown; the
        # periodic reconcile (every 2 s here) must agree and leave it alone.
        assert server["OS-EXT-STS:power_state"] == 4, server
        time.sleep(4.5)
        server = cli.show("vm1")
        assert (server["status"], server["OS-EXT-STS:power_state"]) == (
            "SUSPENDED", 4), server
        boots = _ready_count(guests, uuid, "vm1")
        cli.run("server", "resume", "vm1")
        cli.wait("vm1", "ACTIVE")
        pid = guests.pid(uuid)
        assert pid is not None and guests.qmp_status(uuid) == "running"
        assert not (guests.dir(uuid) / "suspend.state").exists()
        assert "-incoming" in guests.argv(uuid)  # restored, not booted
        time.sleep(1)
        assert _ready_count(guests, uuid, "vm1") == boots, "resume must not reboot the guest"

    # ---- stop / start: no process, then a fresh boot
    with step("stop+start"):
        cli.run("server", "stop", "vm1")
        server = cli.wait("vm1", "SHUTOFF")
        assert server["OS-EXT-STS:power_state"] == 4
        assert guests.pid(uuid) is None and _qemu_pids(data_dir) == []
        # The guest was asked first (ACPI): its console shows it powering off.
        time.sleep(4.5)  # a reconcile pass must not change a stopped guest
        assert cli.show("vm1")["status"] == "SHUTOFF"
        assert _qemu_pids(data_dir) == []
        boots = _ready_count(guests, uuid, "vm1")
        cli.run("server", "start", "vm1")
        cli.wait("vm1", "ACTIVE")
        new_pid = guests.pid(uuid)
        assert new_pid is not None and new_pid != pid
        pid = new_pid
        _wait_for(lambda: _ready_count(guests, uuid, "vm1") > boots, "vm1 to boot after start")

    # ---- soft reboot (ACPI power off + start: a new process) and hard reboot (reset)
    with step("reboot soft"):
        boots = _ready_count(guests, uuid, "vm1")
        cli.run("server", "reboot", "--soft", "vm1")
        cli.wait("vm1", "ACTIVE")
        assert guests.pid(uuid) is not None
        _wait_for(lambda: _ready_count(guests, uuid, "vm1") > boots, "vm1 to boot after reboot")
        pid = guests.pid(uuid)
    with step("reboot hard"):
        boots = _ready_count(guests, uuid, "vm1")
        cli.run("server", "reboot", "--hard", "vm1")
        cli.wait("vm1", "ACTIVE")
        assert guests.pid(uuid) == pid, "a hard reboot resets the same QEMU"
        _wait_for(lambda: _ready_count(guests, uuid, "vm1") > boots,
                  "vm1 to boot after a hard reboot")

    # ---- rescue / unrescue: booted from the rescue disk, own disk second
    with step("rescue+unrescue"):
        boots = _ready_count(guests, uuid, "vm1")
        cli.run("server", "rescue", "vm1")
        cli.wait("vm1", "RESCUE")
        argv = " ".join(guests.argv(uuid))
        assert "disk.rescue" in argv and argv.index("disk.rescue") < argv.index("/disk,")
        assert (guests.dir(uuid) / "disk.rescue").is_file()
        assert guests.qmp_status(uuid) == "running"
        _wait_for(lambda: _ready_count(guests, uuid, "vm1") > boots, "the rescue boot")
        boots = _ready_count(guests, uuid, "vm1")
        cli.run("server", "unrescue", "vm1")
        cli.wait("vm1", "ACTIVE")
        argv = " ".join(guests.argv(uuid))
        assert "disk.rescue" not in argv
        assert not (guests.dir(uuid) / "disk.rescue").exists()
        _wait_for(lambda: _ready_count(guests, uuid, "vm1") > boots, "vm1 after unrescue")

    # ---- resize + confirm: the QEMU process gets the new flavor
    with step("resize+confirm"):
        cli.run("flavor", "create", "--ram", "320", "--vcpus", "2", "--disk", "1",
                "m1.guest2")
        cli.run("server", "resize", "--flavor", "m1.guest2", "vm1")
        server = cli.wait("vm1", "VERIFY_RESIZE")
        assert guests.option(uuid, "-m") == "320" and guests.option(uuid, "-smp") == "2"
        cli.run("server", "resize", "confirm", "vm1")
        server = cli.wait("vm1", "ACTIVE")
        assert "m1.guest2" in json.dumps(server["flavor"]), server["flavor"]
        assert guests.option(uuid, "-m") == "320" and guests.option(uuid, "-smp") == "2"
        pid = guests.pid(uuid)
        assert pid is not None

    # ---- snapshot: the image boots as a new server
    with step("snapshot+boot"):
        cli.run("server", "image", "create", "vm1", "--name", "snap", "--wait")
        image = cli.json("image", "show", "snap")
        assert image["status"] == "active", image
        assert cli.show("vm1")["status"] == "ACTIVE" and guests.pid(uuid) == pid
        vm2 = cli.json("server", "create", "--image", "snap", "--flavor", GUEST_FLAVOR,
                       "--config-drive", "True", "--nic", "none", "vm2", "--wait")
        assert vm2["status"] == "ACTIVE", vm2
        uuid2 = vm2["id"]
        assert guests.pid(uuid2) is not None
        _wait_for(lambda: "onestack-guest: vm2 ready" in cli.run("console", "log", "show",
                                                                  "vm2"),
                  "vm2 (booted from the snapshot) to print its ready line")

    # ---- kill -9 onestack, start it again: the guest runs on and is controlled again
    with step("kill -9 + restart"):
        assert cloud.stop(signal.SIGKILL) == -signal.SIGKILL
        time.sleep(0.5)
        assert guests.pid(uuid) == pid, "the guest must outlive onestack"
        cloud2 = start_cloud(data_dir, ports=ports, env=env, wait=600,
                             args=["--compute-driver", "qemu"])
        # The fixture stops whichever process runs now.
        cloud.proc = cloud2.proc
        assert guests.pid(uuid) == pid, "restarting onestack must not restart the guest"
        assert guests.qmp_status(uuid) == "running"
        server = cli.show("vm1")
        assert server["status"] == "ACTIVE" and server["OS-EXT-STS:power_state"] == 1
        cli.run("server", "stop", "vm1")
        cli.wait("vm1", "SHUTOFF")
        assert guests.pid(uuid) is None and pid not in _qemu_pids(data_dir)

    # ---- delete: nothing left behind
    with step("delete"):
        taps = _taps_of(data_dir)
        cli.run("server", "delete", "--wait", "vm1", "vm2")
        assert cli.json("server", "list") == []
        _wait_for(lambda: not _qemu_pids(data_dir), "every QEMU to exit", 30)
        for u in (uuid, uuid2):
            assert not guests.dir(u).exists(), sorted(p.name for p in guests.dir(u).iterdir())
        for tap in taps:
            assert not Path(f"/sys/class/net/{tap}").exists(), tap
        leftover = [p.name for p in (data_dir / "instances").iterdir()
                    if not p.name.startswith("_")]
        assert leftover == []
    print("timings (s):", json.dumps(timings))
