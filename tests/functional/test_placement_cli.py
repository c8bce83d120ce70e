"""``openstack resource provider …`` (osc-placement) against a running onestack."""

from __future__ import annotations

import json
import uuid

import httpx

from tests.conftest import RunningCloud

V = ["--os-placement-api-version", "1.39"]


def osc(cloud: RunningCloud, *args: str) -> object:
    res = cloud.openstack(*V, *args, "-f", "json")
    return json.loads(res.stdout) if res.stdout.strip() else None


def test_resource_provider_cli_round_trip(cloud: RunningCloud) -> None:
    name = f"cli-rp-{uuid.uuid4().hex[:8]}"
    rp = osc(cloud, "resource", "provider", "create", name)
    assert isinstance(rp, dict) and rp["name"] == name and rp["generation"] == 0
    rp_uuid = rp["uuid"]
    assert rp["root_provider_uuid"] == rp_uuid

    listed = osc(cloud, "resource", "provider", "list", "--name", name)
    assert [p["uuid"] for p in listed] == [rp_uuid]  # type: ignore[union-attr]
    shown = osc(cloud, "resource", "provider", "show", rp_uuid)
    assert shown["name"] == name  # type: ignore[index]

    inv = osc(cloud, "resource", "provider", "inventory", "set", rp_uuid,
              "--resource", "VCPU=8", "--resource", "VCPU:allocation_ratio=2.0",
              "--resource", "MEMORY_MB=4096", "--resource", "DISK_GB=100")
    by_class = {row["resource_class"]: row for row in inv}  # type: ignore[union-attr]
    assert by_class["VCPU"]["total"] == 8 and by_class["VCPU"]["allocation_ratio"] == 2.0
    listed_inv = osc(cloud, "resource", "provider", "inventory", "list", rp_uuid)
    assert {r["resource_class"] for r in listed_inv} == {  # type: ignore[union-attr]
        "VCPU", "MEMORY_MB", "DISK_GB"}

    custom_rc = f"CUSTOM_CLI_{uuid.uuid4().hex[:6].upper()}"
    cloud.openstack(*V, "resource", "class", "create", custom_rc)
    classes = osc(cloud, "resource", "class", "list")
    names = {c["name"] for c in classes}  # type: ignore[union-attr]
    assert {"VCPU", "MEMORY_MB", "DISK_GB", custom_rc} <= names

    custom_trait = f"CUSTOM_CLI_{uuid.uuid4().hex[:6].upper()}"
    cloud.openstack(*V, "trait", "create", custom_trait)
    traits = {t["name"] for t in osc(cloud, "trait", "list")}  # type: ignore[union-attr]
    assert custom_trait in traits and "HW_CPU_X86_AVX2" in traits
    set_traits = osc(cloud, "resource", "provider", "trait", "set", rp_uuid,
                     "--trait", custom_trait, "--trait", "HW_CPU_X86_AVX2")
    assert {t["name"] for t in set_traits} == {  # type: ignore[union-attr]
        custom_trait, "HW_CPU_X86_AVX2"}

    cands = osc(cloud, "allocation", "candidate", "list", "--resource", "VCPU=1",
                "--required", custom_trait)
    assert any(rp_uuid in str(row.get("allocation")) or rp_uuid in json.dumps(row)
               for row in cands)  # type: ignore[union-attr]

    # Consume something and look at the usage.
    consumer = str(uuid.uuid4())
    r = httpx.put(f"{cloud.url('placement')}/allocations/{consumer}", headers={
        "X-Auth-Token": cloud.token(), "OpenStack-API-Version": "placement 1.39"}, json={
        "allocations": {rp_uuid: {"resources": {"VCPU": 3, "MEMORY_MB": 512}}},
        "project_id": uuid.uuid4().hex, "user_id": uuid.uuid4().hex,
        "consumer_generation": None, "consumer_type": "INSTANCE"})
    assert r.status_code == 204, r.text
    usage = osc(cloud, "resource", "provider", "usage", "show", rp_uuid)
    used = {u["resource_class"]: u["usage"] for u in usage}  # type: ignore[union-attr]
    assert used["VCPU"] == 3 and used["MEMORY_MB"] == 512 and used["DISK_GB"] == 0

    # A provider with allocations cannot be deleted.
    res = cloud.openstack(*V, "resource", "provider", "delete", rp_uuid, check=False)
    assert res.returncode != 0 and "allocations" in res.stderr
    cloud.openstack(*V, "resource", "provider", "allocation", "delete", consumer)
    cloud.openstack(*V, "resource", "provider", "delete", rp_uuid)
    res = cloud.openstack(*V, "resource", "provider", "show", rp_uuid, check=False)
    assert res.returncode != 0 and "No resource provider" in res.stderr
