"""The KVM probe's verdicts (``drivers/hypervisor/qemu/host.py``): a firmware-only "KVM works"
is provisional and probed again once a guest kernel exists."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from onestack.drivers.hypervisor.qemu import host
from onestack.drivers.hypervisor.qemu.host import KvmProbe


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, object]:
    """KvmProbe with /dev/kvm usable, a fake probe (firmware: works, kernel: hangs) and a
    kernel that appears when the test says so."""
    state: dict[str, object] = {"kernel": None, "calls": []}
    real_access = os.access
    monkeypatch.setattr(host.os, "access", lambda p, m: True if p == "/dev/kvm"
                        else real_access(p, m))
    monkeypatch.setattr(KvmProbe, "_memo", {})
    monkeypatch.setattr(KvmProbe, "_kernel", staticmethod(lambda cache: state["kernel"]))

    def fake_probe(binary: str, timeout: float, kernel: Path | None) -> bool:
        state["calls"].append(kernel)  # type: ignore[union-attr]
        return kernel is None

    monkeypatch.setattr(KvmProbe, "_probe", staticmethod(fake_probe))
    state["cache"] = tmp_path / "instances" / "_accel.json"
    return state


def test_a_firmware_verdict_is_provisional(probe: dict[str, object]) -> None:
    cache = probe["cache"]
    assert KvmProbe.verdict("qemu", cache, 1.0) == ("kvm", False)  # type: ignore[arg-type]
    # Asked again without a kernel: the cached answer, no new probe.
    assert KvmProbe.verdict("qemu", cache, 1.0) == ("kvm", False)  # type: ignore[arg-type]
    assert probe["calls"] == [None]
    # The guest kernel is built: probed again with it, and that answer is final.
    probe["kernel"] = Path("/guest/vmlinux")
    assert KvmProbe.verdict("qemu", cache, 1.0) == ("tcg", True)  # type: ignore[arg-type]
    assert KvmProbe.verdict("qemu", cache, 1.0) == ("tcg", True)  # type: ignore[arg-type]
    assert probe["calls"] == [None, Path("/guest/vmlinux")]


def test_the_cache_file_keeps_whether_a_kernel_decided(probe: dict[str, object]) -> None:
    cache = probe["cache"]
    KvmProbe.verdict("qemu", cache, 1.0)  # type: ignore[arg-type]
    KvmProbe._memo.clear()
    probe["kernel"] = Path("/guest/vmlinux")
    # A new process reads the firmware-only verdict from the file and does not trust it.
    assert KvmProbe.accel("qemu", cache, 1.0) == "tcg"  # type: ignore[arg-type]
    assert probe["calls"] == [None, Path("/guest/vmlinux")]
