"""Bad input is never a 500 and nothing poisonous is stored (issue 11, defects 4, 5, 7, 9).

Strings with lone surrogates (also as ``\\u`` escapes) and integers beyond 64 bits used to be
committed, and afterwards every list and show containing them answered 500. Now the one
request-body parser refuses them for every service; this tries them on servers, flavors,
projects, groups, server groups, networks and images, then reads every list back.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import RunningCloud, own_cloud
from tests.fuzz.fixtures import Prepared, prepare

SURROGATES = ['"\\ud800"', '"x\\udfffy"', '"\\udc00\\ud800"']
HUGE = [str(2 ** 63), str(2 ** 64), str(2 ** 70), str(-(2 ** 63) - 1), "1e400", "NaN"]


@pytest.fixture(scope="module")
def bc() -> Iterator[RunningCloud]:
    with own_cloud("onestack-bad-input-") as c:
        yield c


@pytest.fixture(scope="module")
def prep(bc: RunningCloud) -> Prepared:
    return prepare({s: bc.url(s) for s in ("identity", "image", "network", "compute",
                                           "placement")}, bc.admin_password)


def _ids(bc: RunningCloud, h: dict[str, str]) -> dict[str, str]:
    comp = bc.url("compute") + "/v2.1"
    srv = httpx.get(comp + "/servers", headers=h).json()["servers"][0]["id"]
    net = [n for n in httpx.get(bc.url("network") + "/v2.0/networks", headers=h).json()[
        "networks"] if n["name"] == "fuzz-net"][0]["id"]
    proj = httpx.get(bc.url("identity") + "/v3/projects", headers=h).json()["projects"][0]["id"]
    return {"server": srv, "network": net, "project": proj}


def test_poison_is_refused_and_lists_still_answer(bc: RunningCloud, prep: Prepared) -> None:
    h = {"X-Auth-Token": prep.admin_token, "Content-Type": "application/json",
         "OpenStack-API-Version": "compute 2.96"}
    ids = _ids(bc, h)
    comp, net = bc.url("compute") + "/v2.1", bc.url("network") + "/v2.0"
    ident, img = bc.url("identity") + "/v3", bc.url("image") + "/v2"
    boot = (f'"imageRef": "{prep.image_id}", "flavorRef": "1", "networks": "none"')
    # (method, url, body template with {} where the bad value goes)
    cases: list[tuple[str, str, str]] = [
        ("POST", comp + "/servers", '{"server": {"name": %s, ' + boot + "}}"),
        ("POST", comp + "/servers",
         '{"server": {"name": "ok", "metadata": {"k": %s}, ' + boot + "}}"),
        ("PUT", f"{comp}/servers/{ids['server']}", '{"server": {"name": %s}}'),
        ("PUT", f"{comp}/servers/{ids['server']}/metadata", '{"metadata": {"k": %s}}'),
        ("POST", f"{comp}/servers/{ids['server']}/metadata", '{"metadata": {"k": %s}}'),
        ("POST", comp + "/flavors", '{"flavor": {"name": %s, "ram": 64, "vcpus": 1, '
                                    '"disk": 1}}'),
        ("POST", comp + "/flavors", '{"flavor": {"name": "f-big", "ram": %s, "vcpus": 1, '
                                    '"disk": 1}}'),
        ("POST", comp + "/os-server-groups",
         '{"server_group": {"name": %s, "policy": "affinity"}}'),
        ("POST", comp + "/os-keypairs", '{"keypair": {"name": %s}}'),
        ("POST", ident + "/projects", '{"project": {"name": %s}}'),
        ("POST", ident + "/projects", '{"project": {"name": "p-x", "description": %s}}'),
        ("PATCH", f"{ident}/projects/{ids['project']}", '{"project": {"description": %s}}'),
        ("POST", ident + "/groups", '{"group": {"name": %s}}'),
        ("POST", net + "/networks", '{"network": {"name": %s}}'),
        ("POST", net + "/networks", '{"network": {"name": "n-x", "mtu": %s}}'),
        ("PUT", f"{net}/networks/{ids['network']}", '{"network": {"description": %s}}'),
        ("POST", img + "/images", '{"name": %s, "disk_format": "raw", '
                                  '"container_format": "bare"}'),
        ("POST", img + "/images", '{"name": "i-x", "min_ram": %s, "disk_format": "raw", '
                                  '"container_format": "bare"}'),
    ]
    before = _snapshot(bc, h)
    for method, url, template in cases:
        for bad in SURROGATES + HUGE:
            body = (template % bad).encode()
            r = httpx.request(method, url, headers=h, content=body)
            assert r.status_code == 400, f"{method} {url} {body!r}: {r.status_code} {r.text}"
            if "/v2/" not in url:  # (Glance's faults are HTML, as Glance's own)
                assert r.headers["content-type"].startswith("application/json"), r.text
    # Glance's JSON patch too
    r = httpx.patch(f"{img}/images/{prep.image_id}", content=(
        b'[{"op": "replace", "path": "/name", "value": "\\ud800"}]'), headers={
        **h, "Content-Type": "application/openstack-images-v2.1-json-patch"})
    assert r.status_code == 400, r.text
    assert _snapshot(bc, h) == before  # nothing was stored


def _snapshot(bc: RunningCloud, h: dict[str, str]) -> dict[str, Any]:
    """Every list the poison used to break (each must answer 200), reduced to names."""
    comp, net = bc.url("compute") + "/v2.1", bc.url("network") + "/v2.0"
    ident, img = bc.url("identity") + "/v3", bc.url("image") + "/v2"
    out: dict[str, Any] = {}
    for url, key in [(comp + "/servers/detail?all_tenants=1", "servers"),
                     (comp + "/flavors/detail", "flavors"),
                     (comp + "/os-server-groups?all_projects=True", "server_groups"),
                     (comp + "/os-keypairs", "keypairs"),
                     (ident + "/projects", "projects"), (ident + "/groups", "groups"),
                     (net + "/networks", "networks"), (img + "/images", "images")]:
        r = httpx.get(url, headers=h)
        assert r.status_code == 200, f"{url}: {r.status_code} {r.text}"
        items = r.json()[key]
        out[key] = sorted(str(i.get("name") or i.get("keypair", {}).get("name"))
                          + str(i.get("description", "")) + str(i.get("metadata", ""))
                          for i in items)
    return out


@pytest.mark.parametrize("path", [
    "/v2.1/servers?limit=" + str(2 ** 70), "/v2.1/servers/detail?marker=%ED%A0%80",
    "/v2.1/flavors?minRam=" + str(2 ** 70), "/v2.1/os-aggregates/" + str(2 ** 70),
    "/v2.1/os-services/" + str(2 ** 70), "/v2.1/servers?name=a%00b",
    "/v2.1/servers/%ED%A0%80", "/v2.1/flavors/" + "9" * 40, "/v2.1/os-keypairs/a%00",
])
def test_bad_path_and_query_parameters_are_4xx(bc: RunningCloud, prep: Prepared,
                                               path: str) -> None:
    h = {"X-Auth-Token": prep.admin_token}
    for method in ("GET", "DELETE", "PUT"):
        r = httpx.request(method, bc.url("compute") + path, headers=h)
        assert 400 <= r.status_code < 500, f"{method} {path}: {r.status_code} {r.text}"
        if r.status_code not in (404, 405):
            assert "badRequest" in r.json() or "itemNotFound" in r.json(), r.text


@pytest.mark.parametrize("service,path", [
    ("network", "/v2.0/networks?limit=" + str(2 ** 70)),
    ("network", "/v2.0/ports?marker=" + "9" * 30),
    ("identity", "/v3/projects?name=%00"), ("image", "/v2/images?limit=" + str(2 ** 64)),
    ("image", "/v2/cache/a%00b"), ("placement", "/resource_providers?limit=" + str(2 ** 70)),
    ("placement", "/resource_providers/" + str(2 ** 70)),
])
def test_bad_parameters_elsewhere_are_4xx(bc: RunningCloud, prep: Prepared, service: str,
                                          path: str) -> None:
    h = {"X-Auth-Token": prep.admin_token, "OpenStack-API-Version": "placement latest"}
    for method in ("GET", "DELETE"):
        r = httpx.request(method, bc.url(service) + path, headers=h)
        assert 400 <= r.status_code < 500, f"{method} {path}: {r.status_code} {r.text}"


def test_server_create_refuses_unknown_and_mistyped_fields(bc: RunningCloud,
                                                           prep: Prepared) -> None:
    """Nova's create schema, by microversion: unknown attributes are a 400 at every
    version; every stored field is typed (hostname, key_name, metadata values ...)."""
    comp = bc.url("compute") + "/v2.1/servers"
    base = {"name": "s", "imageRef": prep.image_id, "flavorRef": "1", "networks": "none"}
    h = {"X-Auth-Token": prep.admin_token}
    count = len(httpx.get(comp, headers=h).json()["servers"])
    for version, extra in [
        ("2.96", {"foo": 1}), ("2.1", {"foo": 1}), ("2.96", {"hostname": 123}),
        ("2.96", {"hostname": ["a"]}), ("2.89", {"hostname": "h"}), ("2.96", {"key_name": 5}),
        ("2.96", {"metadata": {"k": 1}}), ("2.96", {"metadata": {"k": "v" * 256}}),
        ("2.96", {"availability_zone": []}), ("2.96", {"tags": [1]}),
        ("2.96", {"description": {}}), ("2.96", {"networks": [{"uuid": 1}]}),
        ("2.96", {"security_groups": [{"name": 1}]}), ("2.56", {"personality": "x"}),
        ("2.96", {"personality": []}), ("2.96", {"min_count": "x"}),
        ("2.96", {"max_count": 0}), ("2.96", {"user_data": 5}),
        ("2.96", {"block_device_mapping_v2": [{"boot_index": []}]}),
    ]:
        r = httpx.post(comp, headers={**h, "OpenStack-API-Version": f"compute {version}"},
                       json={"server": {**base, **extra}})
        assert r.status_code == 400, f"{version} {extra}: {r.status_code} {r.text}"
        assert "badRequest" in r.json(), r.text
    r = httpx.post(comp, headers={**h, "OpenStack-API-Version": "compute 2.96"},
                   json={"server": {**base}, "bogus": {}})
    assert r.status_code == 400, r.text
    assert len(httpx.get(comp, headers=h).json()["servers"]) == count
    # and the well-formed request of that version still boots
    r = httpx.post(comp, headers={**h, "OpenStack-API-Version": "compute 2.96"},
                   json={"server": {**base, "hostname": "web-1", "metadata": {"k": "v"},
                                    "description": None, "tags": ["a"]}})
    assert r.status_code == 202, r.text


def test_network_and_identity_types(bc: RunningCloud, prep: Prepared) -> None:
    h = {"X-Auth-Token": prep.admin_token}
    net = bc.url("network") + "/v2.0"
    nid = [n for n in httpx.get(net + "/networks", headers=h).json()["networks"]
           if n["name"] == "fuzz-net"][0]["id"]
    for fixed in ([{"subnet_id": []}], [{"subnet_id": {}}], [{"subnet_id": 1}]):
        r = httpx.post(net + "/ports", headers=h, json={"port": {"network_id": nid,
                                                                 "fixed_ips": fixed}})
        assert 400 <= r.status_code < 500 and "NeutronError" in r.json(), r.text
    ident = bc.url("identity") + "/v3"
    tok = httpx.get(ident + "/auth/tokens", headers={**h, "X-Subject-Token": prep.admin_token})
    me = tok.json()["token"]
    trustee = [u for u in httpx.get(ident + "/users", headers=h).json()["users"]
               if u["name"] == "fuzz-member"][0]["id"]
    for roles in ([{"name": 1}], [{"id": []}], [{"id": "a", "name": "b"}], [{}], [None]):
        r = httpx.post(ident + "/OS-TRUST/trusts", headers=h, json={"trust": {
            "trustor_user_id": me["user"]["id"], "trustee_user_id": trustee,
            "project_id": me["project"]["id"], "impersonation": False, "roles": roles}})
        assert r.status_code == 400, f"{roles}: {r.status_code} {r.text}"


def test_padded_fernet_token_is_401(bc: RunningCloud, prep: Prepared) -> None:
    for suffix in ("", "=", "==", "===="):
        r = httpx.get(bc.url("compute") + "/v2.1/flavors",
                      headers={"X-Auth-Token": prep.admin_token + suffix})
        assert r.status_code == (200 if not suffix else 401), (suffix, r.text)


def test_headers_over_the_limit_on_every_port(bc: RunningCloud) -> None:
    for service in ("identity", "image", "network", "compute", "placement"):
        with socket.create_connection(("127.0.0.1", bc.ports[service])) as c:
            c.settimeout(10)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                c.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 100000
                          + b"\r\n\r\n")
            data = b""
            try:
                while piece := c.recv(65536):
                    data += piece
            except ConnectionResetError:
                pass
            assert data.startswith(b"HTTP/1.1 431"), (service, data[:200])
            assert b"connection: close" in data.lower()
        assert httpx.get(bc.url(service) + "/healthcheck").status_code == 200


def test_tags_beyond_latin1_in_location_headers(bc: RunningCloud, prep: Prepared) -> None:
    """A tag named in the path comes back in ``Location`` percent-encoded (it used to be a
    500 after the tag was stored)."""
    h = {"X-Auth-Token": prep.admin_token}
    ident = bc.url("identity") + "/v3"
    pid = httpx.post(ident + "/projects", headers=h,
                     json={"project": {"name": "tags-utf8"}}).json()["project"]["id"]
    r = httpx.put(f"{ident}/projects/{pid}/tags/%F0%9F%98%80", headers=h)
    assert r.status_code == 201, r.text
    assert r.headers["Location"].endswith("/tags/%F0%9F%98%80")
    assert httpx.get(f"{ident}/projects/{pid}/tags", headers=h).json()["tags"] == ["😀"]
    comp = bc.url("compute") + "/v2.1"
    sid = httpx.get(comp + "/servers", headers=h).json()["servers"][0]["id"]
    r = httpx.put(f"{comp}/servers/{sid}/tags/%C3%A9t%C3%A9", headers={
        **h, "OpenStack-API-Version": "compute 2.26"})
    assert r.status_code in (201, 204), r.text
    assert r.headers["Location"].endswith("/tags/%C3%A9t%C3%A9")
