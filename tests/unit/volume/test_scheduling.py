"""Cinder's capabilities matching of volume-type extra specs."""

from __future__ import annotations

from onestack.volume.scheduling import unmet

CAPS = {"storage_protocol": "file", "vendor_name": "Open Source",
        "thin_provisioning_support": True, "free_capacity_gb": 100.0}


def test_plain_and_operator_values() -> None:
    assert unmet({"storage_protocol": "file", "vendor_name": "Open Source"}, CAPS) == []
    assert unmet({"capabilities:thin_provisioning_support": "<is> True"}, CAPS) == []
    assert unmet({"free_capacity_gb": ">= 10"}, CAPS) == []
    assert unmet({"free_capacity_gb": "<= 10"}, CAPS) == ["free_capacity_gb"]
    assert unmet({"storage_protocol": "<or> iSCSI <or> file"}, CAPS) == []
    assert unmet({"vendor_name": "<in> Open"}, CAPS) == []


def test_unknown_capability_fails_and_other_scopes_are_ignored() -> None:
    assert unmet({"storage_protocol": "iSCSI", "tier": "1"}, CAPS) == ["storage_protocol",
                                                                        "tier"]
    assert unmet({"qos:read_iops_sec": "100", "hw:cpu": "2"}, CAPS) == []
