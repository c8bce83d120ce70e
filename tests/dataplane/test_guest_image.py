"""Boot the onestack test guest under QEMU (TCG) with a config drive and no network devices.

The guest must read its config drive, take the hostname and SSH key from meta_data.json, run the
user-data script, accept the injected key over SSH (checked from inside the guest on 127.0.0.1)
and print its ready line; it must then power off cleanly on the ACPI power button.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from onestack.guestimage import GuestImage, build_guest_image

QEMU = "qemu-system-x86_64"
QBOOT = Path("/usr/share/qemu/qboot.rom")  # minimal firmware: boots -kernel faster than SeaBIOS
READY_TIMEOUT = 60.0
POWEROFF_TIMEOUT = 30.0

pytestmark = [
    pytest.mark.skipif(shutil.which(QEMU) is None, reason=f"{QEMU} is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="dataplane tests run as root only"),
    pytest.mark.skipif(
        shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None,
        reason="the guest image is built from Debian packages (apt-get, dpkg-deb)",
    ),
]


@pytest.fixture(scope="module")
def guest_image() -> GuestImage:
    """The (cached) test guest image."""
    return build_guest_image()


def _ssh_keypair(directory: Path) -> tuple[str, str]:
    """Return (private key, public key) of a fresh ed25519 key in OpenSSH format."""
    key = directory / "id_ed25519"
    if shutil.which("ssh-keygen"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "onestack-test", "-f", str(key)],
            check=True,
        )
        return key.read_text(), (directory / "id_ed25519.pub").read_text().strip()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    private_text = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public_text = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private_text, public_text.decode() + " onestack-test"


def _config_drive(path: Path, files: dict[str, bytes]) -> None:
    """Write an ISO9660 config drive (label config-2, Rock Ridge + Joliet names)."""
    try:
        import pycdlib
    except ImportError:
        pycdlib = None
    if pycdlib is not None:
        iso = pycdlib.PyCdlib()
        iso.new(rock_ridge="1.09", joliet=3, vol_ident="config-2")
        dirs: dict[str, str] = {"": ""}
        for n, (name, data) in enumerate(sorted(files.items())):
            parent = ""
            for part in name.split("/")[:-1]:
                here = f"{parent}/{part}" if parent else part
                if here not in dirs:
                    dirs[here] = f"{dirs[parent]}/D{len(dirs):04d}"
                    iso.add_directory(dirs[here], rr_name=part, joliet_path=f"/{here}")
                parent = here
            iso.add_fp(
                io.BytesIO(data),
                len(data),
                f"{dirs[parent]}/F{n:04d}.;1",
                rr_name=name.rsplit("/", 1)[-1],
                joliet_path=f"/{name}",
            )
        iso.write(str(path))
        iso.close()
        return
    tool = shutil.which("genisoimage") or shutil.which("mkisofs") or shutil.which("xorrisofs")
    if tool is None:
        pytest.skip("no ISO writer: install pycdlib, genisoimage or xorriso")
    tree = path.with_suffix(".d")
    for name, data in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    subprocess.run(
        [tool, "-quiet", "-R", "-J", "-V", "config-2", "-o", str(path), str(tree)], check=True
    )
    shutil.rmtree(tree)


def _wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> str:
    """Wait until *text* appears in the serial log; return the log."""
    deadline = time.monotonic() + timeout
    content = ""
    while time.monotonic() < deadline:
        content = log.read_text(errors="replace") if log.exists() else ""
        if text in content or proc.poll() is not None:
            break
        time.sleep(0.05)
    return content


# How the config drive is attached: (machine, QEMU arguments).
ATTACH = {
    "virtio-blk": (
        "q35",
        [
            "-drive", "file={iso},if=none,id=config,format=raw,readonly=on",
            "-device", "virtio-blk-pci,drive=config",
        ],
    ),
    "ide-cdrom": (
        "pc",
        ["-drive", "file={iso},if=ide,index=1,media=cdrom,format=raw,readonly=on"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("attach", sorted(ATTACH))
def test_guest_boots_with_config_drive(
    guest_image: GuestImage, tmp_path: Path, attach: str
) -> None:
    private_key, public_key = _ssh_keypair(tmp_path)
    nonce = secrets.token_hex(8)
    meta_data = {
        "uuid": "6f6e6573-7461-636b-2d74-657374766d31",
        "name": "testvm",
        "hostname": "testvm",
        "launch_index": 0,
        "availability_zone": "nova",
        "public_keys": {"onestack-test": public_key + "\n"},
        "keys": [{"name": "onestack-test", "type": "ssh", "data": public_key + "\n"}],
    }
    user_data = (
        "#!/bin/sh\n"
        f'echo "onestack-test-userdata: $(hostname) {nonce}"\n'
        "cat > /tmp/id <<'EOF'\n"
        f"{private_key.strip()}\n"
        "EOF\n"
        "chmod 600 /tmp/id\n"
        "dropbearconvert openssh dropbear /tmp/id /tmp/id.db >/dev/null 2>&1\n"
        "timeout 30 dbclient -y -i /tmp/id.db root@127.0.0.1 "
        "'echo onestack-test-ssh: uid=$(id -u)' </dev/null 2>/dev/null\n"
    )
    iso = tmp_path / "config.iso"
    _config_drive(
        iso,
        {
            "openstack/latest/meta_data.json": json.dumps(meta_data).encode(),
            "openstack/latest/user_data": user_data.encode(),
        },
    )
    serial = tmp_path / "serial.log"
    monitor = tmp_path / "monitor.sock"
    machine, attach_args = ATTACH[attach]
    argv = [
        QEMU,
        "-machine", f"{machine},accel=tcg",
        "-cpu", "max",
        "-m", "256",
        "-smp", "1",
        "-nodefaults",
        "-no-user-config",
        "-display", "none",
        "-nic", "none",
        "-serial", f"file:{serial}",
        "-monitor", f"unix:{monitor},server=on,wait=off",
        *(["-bios", str(QBOOT)] if QBOOT.exists() else []),
        *guest_image.qemu_boot_args(),
        *(arg.format(iso=iso) for arg in attach_args),
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        marker = guest_image.ready_marker("testvm")
        log = _wait_for(serial, marker, proc, READY_TIMEOUT)
        elapsed = time.monotonic() - started
        assert marker in log, f"no ready line after {elapsed:.1f} s; serial log:\n{log}"
        print(f"{attach}: ready after {elapsed:.1f} s")
        assert f"onestack-test-userdata: testvm {nonce}" in log, log
        assert "onestack-test-ssh: uid=0" in log, f"ssh login with the injected key failed:\n{log}"

        # ACPI power button: busybox acpid -> poweroff -> QEMU exits by itself.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mon:
            mon.connect(str(monitor))
            mon.sendall(b"system_powerdown\n")
            try:
                proc.wait(timeout=POWEROFF_TIMEOUT)
            except subprocess.TimeoutExpired:
                log = serial.read_text(errors="replace")
                pytest.fail(f"guest did not power off on the ACPI power button:\n{log}")
        assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
        shutil.rmtree(tmp_path, ignore_errors=True)
