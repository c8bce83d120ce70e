"""The calls real clients make that used to fail (issue 17), through openstacksdk and the
``openstack`` CLI: unified limits (and compute quotas read from them), access rules shared
by credentials, address scopes, service providers, router gateways, floating-IP port
details, project cleanup and DevStack's flavors."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openstack
import pytest
from openstack import exceptions as exc

from tests.conftest import RunningCloud, own_cloud


def _conn(cloud: RunningCloud, user: str = "admin", password: str | None = None,
          project: str = "admin") -> Any:
    return openstack.connect(
        auth_url=cloud.auth_url, username=user, password=password or cloud.admin_password,
        project_name=project, user_domain_id="default", project_domain_id="default",
        region_name="RegionOne", identity_api_version="3")


def _json(cloud: RunningCloud, *args: str, env: dict[str, str] | None = None) -> Any:
    return json.loads(cloud.openstack(*args, "-f", "json", env=env).stdout)


@pytest.fixture(scope="module")
def limited() -> Iterator[RunningCloud]:
    """A cloud whose compute quotas come from unified limits."""
    with own_cloud("onestack-ul-", env={"ONESTACK_COMPUTE_UNIFIED_LIMITS": "true"}) as c:
        yield c


def test_unified_limits_with_sdk_and_cli(cloud: RunningCloud) -> None:
    conn = _conn(cloud)
    compute = conn.identity.find_service("compute") or next(
        s for s in conn.identity.services() if s.type == "compute")
    name = f"res-{uuid.uuid4().hex[:6]}"
    reg = conn.identity.create_registered_limit(service_id=compute.id, resource_name=name,
                                                default_limit=10, description="d")
    assert reg.default_limit == 10 and reg.region_id is None
    with pytest.raises(exc.ConflictException):
        conn.identity.create_registered_limit(service_id=compute.id, resource_name=name,
                                              default_limit=3)
    with pytest.raises(exc.BadRequestException):
        conn.identity.create_registered_limit(service_id="nope", resource_name=name,
                                              default_limit=3)
    assert [r.id for r in conn.identity.registered_limits(resource_name=name)] == [reg.id]
    user, password, project = cloud.make_member("ul")
    pid = conn.identity.find_project(project).id
    # A limit needs a registered limit to refer to.
    with pytest.raises(exc.ForbiddenException):
        conn.identity.create_limit(service_id=compute.id, resource_name=name + "x",
                                   resource_limit=1, project_id=pid)
    lim = conn.identity.create_limit(service_id=compute.id, resource_name=name,
                                     resource_limit=4, project_id=pid)
    assert lim.resource_limit == 4 and lim.project_id == pid
    lim = conn.identity.update_limit(lim, resource_limit=5)
    assert conn.identity.get_limit(lim.id).resource_limit == 5
    # Referenced: the registered limit can be neither deleted nor moved.
    with pytest.raises(exc.ForbiddenException):
        conn.identity.delete_registered_limit(reg)
    # The member sees its project's limit and the registered limits, changes nothing.
    member = _conn(cloud, user, password, project)
    assert [x.id for x in member.identity.limits()] == [lim.id]
    assert member.identity.get_limit(lim.id).resource_limit == 5
    assert reg.id in [r.id for r in member.identity.registered_limits()]
    # A domain-scoped token sees the limits of the domain's projects (Keystone).
    admin_h = {"X-Auth-Token": cloud.token()}
    uid = conn.identity.find_user(user).id
    reader = conn.identity.find_role("reader").id
    r = httpx.put(f"{cloud.auth_url}/domains/default/users/{uid}/roles/{reader}",
                  headers=admin_h)
    assert r.status_code == 204, r.text
    r = httpx.post(cloud.auth_url + "/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"domain": {"id": "default"}}}})
    assert r.status_code == 201, r.text
    domain_h = {"X-Auth-Token": r.headers["X-Subject-Token"]}
    seen = httpx.get(cloud.auth_url + "/limits", headers=domain_h).json()["limits"]
    assert lim.id in [x["id"] for x in seen]
    r = httpx.get(f"{cloud.auth_url}/limits/{lim.id}", headers=domain_h)
    assert r.status_code == 200 and r.json()["limit"]["resource_limit"] == 5
    with pytest.raises(exc.ForbiddenException):
        member.identity.create_registered_limit(service_id=compute.id, resource_name="z",
                                                default_limit=1)
    # The CLI, and the enforcement model.
    shown = _json(cloud, "limit", "show", lim.id)
    assert shown["resource_limit"] == 5
    listed = _json(cloud, "registered", "limit", "list", "--resource-name", name)
    assert [r["ID"] for r in listed] == [reg.id]
    model = httpx.get(cloud.auth_url + "/limits/model",
                      headers={"X-Auth-Token": cloud.token()}).json()["model"]
    assert model["name"] == "flat"
    conn.identity.delete_limit(lim)
    conn.identity.delete_registered_limit(reg)
    assert list(conn.identity.registered_limits(resource_name=name)) == []


def test_compute_quota_from_unified_limits(limited: RunningCloud, tmp_path: Any) -> None:
    conn = _conn(limited)
    compute = next(s for s in conn.identity.services() if s.type == "compute")
    user, password, project = limited.make_member("uq")
    pid = conn.identity.find_project(project).id
    # No registered limit for servers: no server may be created (Nova's "require").
    member = _conn(limited, user, password, project)
    image = tmp_path / "img.raw"
    image.write_bytes(b"\0" * 65536)
    img = conn.image.create_image(name="ul-img", filename=str(image), disk_format="raw",
                                  container_format="bare", visibility="public")
    net = member.network.create_network(name="ul-net")
    member.network.create_subnet(network_id=net.id, cidr="10.77.0.0/24", ip_version=4)
    flavor = conn.compute.find_flavor("cirros256")
    with pytest.raises(exc.ForbiddenException):
        member.compute.create_server(name="s0", image_id=img.id, flavor_id=flavor.id,
                                     networks=[{"uuid": net.id}])
    conn.identity.create_registered_limit(service_id=compute.id, resource_name="servers",
                                          default_limit=10)
    conn.identity.create_limit(service_id=compute.id, resource_name="servers",
                               resource_limit=1, project_id=pid)
    s1 = member.compute.create_server(name="s1", image_id=img.id, flavor_id=flavor.id,
                                      networks=[{"uuid": net.id}])
    member.compute.wait_for_server(s1, wait=60)
    with pytest.raises(exc.ForbiddenException, match="Quota exceeded for instances"):
        member.compute.create_server(name="s2", image_id=img.id, flavor_id=flavor.id,
                                     networks=[{"uuid": net.id}])
    # The quota API shows the unified value.
    quota = conn.compute.get_quota_set(pid)
    assert quota.instances == 1


def test_access_rules_shared_by_credentials(cloud: RunningCloud) -> None:
    user, password, project = cloud.make_member("ar")
    conn = _conn(cloud, user, password, project)
    uid = conn.current_user_id
    rule = {"service": "compute", "method": "GET", "path": "/v2.1/servers"}
    other = {"service": "image", "method": "GET", "path": "/v2/images"}
    a = conn.identity.create_application_credential(uid, "a", access_rules=[rule])
    b = conn.identity.create_application_credential(uid, "b", access_rules=[rule, other])
    shared = a.access_rules[0]["id"]
    assert shared in [r["id"] for r in b.access_rules]
    rules = list(conn.identity.access_rules(uid))
    assert len(rules) == 2
    assert {r.path for r in rules} == {"/v2.1/servers", "/v2/images"}
    with pytest.raises(exc.ForbiddenException):
        conn.identity.delete_access_rule(uid, shared)
    conn.identity.delete_application_credential(uid, a)
    conn.identity.delete_application_credential(uid, b)
    for r in rules:
        conn.identity.delete_access_rule(uid, r.id)
    assert list(conn.identity.access_rules(uid)) == []


def test_address_scopes_and_subnet_pools(cloud: RunningCloud) -> None:
    conn = _conn(cloud)
    scope = conn.network.create_address_scope(name=f"as-{uuid.uuid4().hex[:6]}",
                                              ip_version=4, shared=True)
    assert scope.ip_version == 4 and scope.is_shared
    pool = conn.network.create_subnet_pool(name="as-p1", prefixes=["10.60.0.0/16"],
                                           address_scope_id=scope.id, default_prefixlen=24)
    assert pool.address_scope_id == scope.id
    # Pools of one scope never overlap; a v6 pool cannot join a v4 scope.
    with pytest.raises(exc.BadRequestException):
        conn.network.create_subnet_pool(name="as-p2", prefixes=["10.60.5.0/24"],
                                        address_scope_id=scope.id)
    with pytest.raises(exc.BadRequestException):
        conn.network.create_subnet_pool(name="as-p3", prefixes=["fd00:60::/48"],
                                        address_scope_id=scope.id)
    net = conn.network.create_network(name="as-net")
    conn.network.create_subnet(network_id=net.id, subnetpool_id=pool.id, ip_version=4)
    assert conn.network.get_network(net.id).ipv4_address_scope_id == scope.id
    # In use: not deleted; shared: never unshared.
    with pytest.raises(exc.ConflictException):
        conn.network.delete_address_scope(scope)
    with pytest.raises(exc.BadRequestException):
        conn.network.update_address_scope(scope, shared=False)
    # Another project sees the shared scope but cannot bind its pools to it.
    user, password, project = cloud.make_member("as")
    member = _conn(cloud, user, password, project)
    assert member.network.get_address_scope(scope.id).id == scope.id
    with pytest.raises(exc.BadRequestException):
        member.network.create_subnet_pool(name="mine", prefixes=["10.61.0.0/16"],
                                          address_scope_id=scope.id)
    own = member.network.create_address_scope(name="own", ip_version=4)
    assert own.id not in [s.id for s in _conn(cloud, *cloud.make_member("as2")[:3])
                          .network.address_scopes()]
    cli = _json(cloud, "address", "scope", "show", scope.id)
    assert cli["ip_version"] == 4 and cli["shared"] is True
    for subnet in conn.network.subnets(network_id=net.id):
        conn.network.delete_subnet(subnet)
    conn.network.delete_network(net)
    conn.network.delete_subnet_pool(pool)
    conn.network.delete_address_scope(scope)


def test_service_providers(cloud: RunningCloud) -> None:
    user, password, project = cloud.make_member("sp")
    providers = list(_conn(cloud, user, password, project).network.service_providers())
    assert [(p.service_type, p.is_default) for p in providers] == [("L3_ROUTER_NAT", True)]
    rows = _json(cloud, "network", "service", "provider", "list")
    assert rows[0]["Service Type"] == "L3_ROUTER_NAT"


def test_router_gateway_and_floating_ip_details(cloud: RunningCloud) -> None:
    conn = _conn(cloud)
    ext = conn.network.create_network(name="ext-nosubnet", is_router_external=True)
    router = conn.network.create_router(name="gw-nosubnet",
                                        external_gateway_info={"network_id": ext.id})
    assert router.external_gateway_info["network_id"] == ext.id
    assert router.external_gateway_info["external_fixed_ips"] == []
    user, password, project = cloud.make_member("rt")
    member = _conn(cloud, user, password, project)
    mine = member.network.create_router(name="mine")
    # Admin-only attributes are not shown to a project user (None to the SDK).
    assert mine.is_ha is None and mine.is_distributed is None
    public = member.network.find_network("public")
    net = member.network.create_network(name="fip-net")
    sub = member.network.create_subnet(network_id=net.id, cidr="10.88.0.0/24", ip_version=4)
    member.network.add_interface_to_router(mine, subnet=sub.id)
    member.network.update_router(mine, external_gateway_info={"network_id": public.id})
    port = member.network.create_port(network_id=net.id, name="fip-port")
    fip = member.network.create_ip(floating_network_id=public.id)
    assert fip.port_details is None
    fip = member.network.update_ip(fip, port_id=port.id)
    assert fip.port_details["name"] == "fip-port"
    assert fip.port_details["mac_address"] == port.mac_address
    assert member.network.get_ip(fip.id).port_details["network_id"] == net.id
    conn.network.delete_router(router)
    conn.network.delete_network(ext)


def test_project_cleanup_finds_and_deletes(cloud: RunningCloud) -> None:
    """As OpenStack requires, the cleaner holds a role on the project it cleans: the
    project's own member (``--auth-project``), or the SDK's ``project_cleanup``."""
    import queue

    user, password, project = cloud.make_member("pc")
    member = _conn(cloud, user, password, project)
    net = member.network.create_network(name="pc-net")
    member.network.create_subnet(network_id=net.id, cidr="10.99.0.0/24", ip_version=4)
    router = member.network.create_router(name="pc-router")
    member.network.create_security_group(name="pc-sg")
    env = cloud.os_env(user, password, project)
    out = cloud.openstack("project", "cleanup", "--dry-run", "--auth-project", env=env).stdout
    for name in ("pc-net", "pc-router", "pc-sg"):
        assert name in out, out
    assert member.network.find_network("pc-net") is not None
    status: queue.Queue[Any] = queue.Queue()
    member.project_cleanup(dry_run=True, status_queue=status)
    found = set()
    while not status.empty():
        found.add(getattr(status.get(), "name", None))
    assert {"pc-net", "pc-router", "pc-sg"} <= found
    member.project_cleanup(dry_run=False, wait_timeout=60)
    assert member.network.find_network("pc-net") is None
    assert member.network.find_router(router.id) is None
    assert [g.name for g in member.network.security_groups()] in ([], ["default"])


def test_devstack_flavors(cloud: RunningCloud) -> None:
    flavors = {f.name: f for f in _conn(cloud).compute.flavors()}
    expected = {"cirros256": ("c1", 256, 1, 1), "ds512M": ("d1", 512, 5, 1),
                "ds1G": ("d2", 1024, 10, 1), "ds2G": ("d3", 2048, 10, 2),
                "ds4G": ("d4", 4096, 20, 4), "m1.tiny": ("1", 512, 1, 1),
                "m1.small": ("2", 2048, 20, 1), "m1.medium": ("3", 4096, 40, 2),
                "m1.large": ("4", 8192, 80, 4), "m1.xlarge": ("5", 16384, 160, 8)}
    for name, (fid, ram, disk, vcpus) in expected.items():
        f = flavors[name]
        assert (f.id, f.ram, f.disk, f.vcpus) == (fid, ram, disk, vcpus), name
    assert flavors["ds1G"].extra_specs == {"hw_rng:allowed": "True"}
    # Scripts that search by RAM range find DevStack's set.
    small = [f.name for f in _conn(cloud).compute.flavors(min_ram=256) if f.ram <= 1024]
    assert {"cirros256", "ds512M", "ds1G", "m1.tiny"} <= set(small)


def test_image_quota_from_unified_limits(tmp_path: Any) -> None:
    """``image_unified_limits``: the image service's ``image_size_total`` (MiB) per project,
    nothing uploaded without a registered limit (Glance's ``use_keystone_limits``)."""
    with own_cloud("onestack-il-", env={"ONESTACK_IMAGE_UNIFIED_LIMITS": "true"}) as c:
        conn = _conn(c)
        image_svc = next(s for s in conn.identity.services() if s.type == "image")
        data = tmp_path / "one-mib.raw"
        data.write_bytes(b"\1" * (1 << 20))
        with pytest.raises(exc.HttpException) as err:
            conn.image.create_image(name="none", filename=str(data), disk_format="raw",
                                    container_format="bare")
        assert err.value.status_code == 413
        conn.identity.create_registered_limit(service_id=image_svc.id,
                                              resource_name="image_size_total",
                                              default_limit=1)
        # As with Glance, every one of its four limits must be registered.
        with pytest.raises(exc.HttpException) as err:
            conn.image.create_image(name="fits", filename=str(data), disk_format="raw",
                                    container_format="bare")
        assert err.value.status_code == 413
        for name, value in (("image_count_total", 2), ("image_count_uploading", 1),
                            ("image_stage_total", 1)):
            conn.identity.create_registered_limit(service_id=image_svc.id,
                                                  resource_name=name, default_limit=value)
        for leftover in conn.image.images(owner=conn.current_project_id):
            conn.image.delete_image(leftover)  # queued images the refusals left
        conn.image.create_image(name="fits", filename=str(data), disk_format="raw",
                                container_format="bare")
        with pytest.raises(exc.HttpException) as err:
            conn.image.create_image(name="over", filename=str(data), disk_format="raw",
                                    container_format="bare")
        assert err.value.status_code == 413
        usage = httpx.get(c.url("image") + "/v2/info/usage",
                          headers={"X-Auth-Token": c.token()}).json()["usage"]
        assert usage["image_size_total"] == {"limit": 1 << 20, "usage": 1 << 20}
        assert usage["image_count_total"] == {"limit": 2, "usage": 1}
        assert usage["image_count_uploading"]["limit"] == 1
        # A second image record fits, a third is one too many (image_count_total).
        codes = [httpx.post(c.url("image") + "/v2/images", json={"name": f"n{i}"},
                            headers={"X-Auth-Token": c.token()}).status_code
                 for i in range(2)]
        assert codes == [201, 413], codes


def test_volume_quota_from_unified_limits() -> None:
    """``volume_unified_limits``: the ``block-storage`` service's limits (Cinder's resource
    names) replace os-quota-sets; a resource without a registered limit is unlimited."""
    with own_cloud("onestack-vl-", env={"ONESTACK_VOLUME_UNIFIED_LIMITS": "true"}) as c:
        conn = _conn(c)
        svc = next(s for s in conn.identity.services() if s.type == "block-storage")
        first = conn.block_storage.create_volume(size=1, name="v1")  # unlimited so far
        conn.block_storage.wait_for_status(first, "available", wait=30)
        conn.identity.create_registered_limit(service_id=svc.id, resource_name="volumes",
                                              default_limit=1)
        with pytest.raises(exc.HttpException) as err:
            conn.block_storage.create_volume(size=1, name="v2")
        assert err.value.status_code == 413
        project = conn.current_project_id
        conn.identity.create_limit(service_id=svc.id, project_id=project,
                                   resource_name="volumes", resource_limit=2)
        second = conn.block_storage.create_volume(size=1, name="v2")
        conn.block_storage.wait_for_status(second, "available", wait=30)
        quotas = httpx.get(f"{c.url('volume')}/v3/{project}/os-quota-sets/{project}",
                           headers={"X-Auth-Token": c.token()}).json()["quota_set"]
        assert quotas["volumes"] == 2 and quotas["gigabytes"] == -1
