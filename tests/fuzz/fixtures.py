"""What the fuzzer needs in the cloud before it starts: tokens and one of each resource, so
that paths with real ids and plausible bodies reach deep into every service."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Prepared:
    admin_token: str
    member_token: str
    protected_ids: set[str]
    image_id: str


def _token(identity: str, user: str, password: str, project: str) -> tuple[str, dict[str, Any]]:
    r = httpx.post(identity + "/v3/auth/tokens", json={"auth": {"identity": {
        "methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}, timeout=30)
    assert r.status_code == 201, r.text
    return r.headers["X-Subject-Token"], r.json()["token"]


def prepare(urls: dict[str, str], admin_password: str) -> Prepared:
    """Tokens (admin, and a member of its own project) and one of each resource."""
    identity = urls["identity"]
    admin, doc = _token(identity, "admin", admin_password, "admin")
    protected = {doc["user"]["id"], doc["project"]["id"], "default"}
    h = {"X-Auth-Token": admin}
    c = httpx.Client(headers=h, timeout=30)

    def ok(r: httpx.Response) -> Any:
        assert r.status_code < 300, f"{r.request.method} {r.request.url}: {r.text}"
        return r.json() if r.content else None

    # identity: a member of its own project, and one of each object to change
    roles = {r["name"]: r["id"] for r in ok(c.get(identity + "/v3/roles"))["roles"]}
    protected.update(roles.values())
    suffix = uuid.uuid4().hex[:6]
    pid = ok(c.post(identity + "/v3/projects", json={"project": {
        "name": "fuzz-member"}}))["project"]["id"]
    uid = ok(c.post(identity + "/v3/users", json={"user": {
        "name": "fuzz-member", "password": "fuzz-Pass-1"}}))["user"]["id"]
    c.put(f"{identity}/v3/projects/{pid}/users/{uid}/roles/{roles['member']}")
    protected.update({pid, uid})
    member, _ = _token(identity, "fuzz-member", "fuzz-Pass-1", "fuzz-member")
    ok(c.post(identity + "/v3/projects", json={"project": {"name": f"fz-p-{suffix}"}}))
    gid = ok(c.post(identity + "/v3/groups", json={"group": {"name": f"fz-g-{suffix}"}}))
    ok(c.post(identity + "/v3/users", json={"user": {"name": f"fz-u-{suffix}",
                                                     "password": "x-Pass-12"}}))
    ok(c.post(identity + "/v3/domains", json={"domain": {"name": f"fz-d-{suffix}"}}))
    ok(c.post(identity + "/v3/roles", json={"role": {"name": f"fz-r-{suffix}"}}))
    ok(c.post(identity + "/v3/regions", json={"region": {"id": f"fz-region-{suffix}"}}))
    ok(c.post(identity + "/v3/credentials", json={"credential": {
        "type": "totp", "user_id": doc["user"]["id"], "blob": "secret"}}))
    ok(c.post(f"{identity}/v3/users/{doc['user']['id']}/application_credentials", json={
        "application_credential": {"name": f"fz-ac-{suffix}"}}))
    del gid
    ok(c.post(identity + "/v3/OS-TRUST/trusts", json={"trust": {
        "trustor_user_id": doc["user"]["id"], "trustee_user_id": uid,
        "project_id": doc["project"]["id"], "impersonation": False,
        "roles": [{"name": "member"}]}}))

    # image: one active raw image
    image = urls["image"]
    img = ok(c.post(image + "/v2/images", json={
        "name": "fuzz-image", "disk_format": "raw", "container_format": "bare",
        "visibility": "public"}))
    r = c.put(f"{image}/v2/images/{img['id']}/file", content=b"\0" * 1024,
              headers={**h, "Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    c.put(f"{image}/v2/images/{img['id']}/tags/fuzz")

    # network: a network, subnet, port, router, security group, floating ip
    net = urls["network"] + "/v2.0"
    nid = ok(c.post(net + "/networks", json={"network": {"name": "fuzz-net"}}))["network"]["id"]
    sid = ok(c.post(net + "/subnets", json={"subnet": {
        "network_id": nid, "cidr": "10.77.0.0/24", "ip_version": 4}}))["subnet"]["id"]
    ok(c.post(net + "/ports", json={"port": {"network_id": nid, "name": "fuzz-port"}}))
    rid = ok(c.post(net + "/routers", json={"router": {"name": "fuzz-router"}}))["router"]["id"]
    c.put(f"{net}/routers/{rid}/add_router_interface", json={"subnet_id": sid})
    ok(c.post(net + "/security-groups", json={"security_group": {"name": "fuzz-sg"}}))

    # compute: a server (with metadata and a tag), a flavor, a group, a keypair, an aggregate
    comp = urls["compute"] + "/v2.1"
    v = {**h, "OpenStack-API-Version": "compute 2.79"}
    srv = ok(c.post(comp + "/servers", headers=v, json={"server": {
        "name": "fuzz-vm", "imageRef": img["id"], "flavorRef": "1", "networks": "none",
        "metadata": {"k": "v"}, "tags": ["fuzz"]}}))["server"]
    fl = ok(c.post(comp + "/flavors", headers=v, json={"flavor": {
        "name": f"fz-f-{suffix}", "ram": 64, "vcpus": 1, "disk": 1}}))["flavor"]
    ok(c.post(f"{comp}/flavors/{fl['id']}/os-extra_specs", headers=v,
              json={"extra_specs": {"hw:cpu_policy": "shared"}}))
    ok(c.post(comp + "/os-server-groups", headers=v, json={"server_group": {
        "name": "fuzz-sg", "policy": "anti-affinity"}}))
    ok(c.post(comp + "/os-keypairs", headers=v, json={"keypair": {"name": "fuzz-kp"}}))
    ok(c.post(comp + "/os-aggregates", headers=v, json={"aggregate": {"name": "fuzz-agg"}}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        s = ok(c.get(f"{comp}/servers/{srv['id']}", headers=v))["server"]
        if s["status"] in ("ACTIVE", "ERROR") and not s["OS-EXT-STS:task_state"]:
            break
        time.sleep(0.1)

    # placement: a custom resource class and trait
    pl = urls["placement"]
    ph = {**h, "OpenStack-API-Version": "placement latest"}
    c.post(pl + "/resource_classes", headers=ph, json={"name": "CUSTOM_FUZZ"})
    c.put(pl + "/traits/CUSTOM_FUZZ", headers=ph)
    c.close()
    return Prepared(admin, member, protected, img["id"])
