"""Compute microversion parsing (``compute/microversions.py``) and the status of states."""

from __future__ import annotations

from typing import Any

from onestack.compute import states
from onestack.compute.microversions import APIVersion, requested


def test_microversions_and_status() -> None:
    def scope(value: str) -> dict[str, Any]:
        return {"headers": [(b"openstack-api-version", value.encode())]}

    assert str(requested(scope("compute 2.47"))[0]) == "2.47"
    assert requested(scope("compute latest"))[0] >= "2.90"
    assert requested(scope("compute 2.x"))[0] is None
    assert requested({"headers": []})[0] == APIVersion("2.1")
    assert APIVersion("2.10") > "2.9"
    assert states.status("active", "rebooting_hard") == "HARD_REBOOT"
    assert states.status("stopped", None) == "SHUTOFF"
    assert states.status("resized", None) == "VERIFY_RESIZE"
