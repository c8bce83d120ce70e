"""Restricted application credentials: their access rules hold on every service.

A token from an application credential with access rules may make only the requests a rule
matches (service type, method, path); anything else is a 401, as keystonemiddleware answers.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import RunningCloud

Rule = dict[str, str]


def _rule(service: str, method: str, path: str) -> Rule:
    return {"service": service, "method": method, "path": path}


class Member:
    """A member of a fresh project, and what it needs to create application credentials."""

    def __init__(self, cloud: RunningCloud) -> None:
        self.cloud = cloud
        self.user, self.password, self.project = cloud.make_member("acr")
        self.token = cloud.token(self.user, self.password, self.project)
        doc = httpx.get(cloud.auth_url + "/auth/tokens", headers={
            "X-Auth-Token": self.token, "X-Subject-Token": self.token}).json()["token"]
        self.user_id = doc["user"]["id"]
        self.project_id = doc["project"]["id"]

    def create_cred(self, rules: list[Any] | None, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"name": "ac-" + uuid.uuid4().hex[:8], **extra}
        if rules is not None:
            body["access_rules"] = rules
        r = httpx.post(f"{self.cloud.auth_url}/users/{self.user_id}/application_credentials",
                       headers={"X-Auth-Token": self.token},
                       json={"application_credential": body})
        assert r.status_code == 201, r.text
        return dict(r.json()["application_credential"])

    def cred_token(self, cred: dict[str, Any]) -> str:
        r = httpx.post(self.cloud.auth_url + "/auth/tokens", json={"auth": {"identity": {
            "methods": ["application_credential"],
            "application_credential": {"id": cred["id"], "secret": cred["secret"]}}}})
        assert r.status_code == 201, r.text
        return r.headers["X-Subject-Token"]


@pytest.fixture(scope="module")
def member(cloud: RunningCloud) -> Member:
    return Member(cloud)


def call(cloud: RunningCloud, token: str, service: str, method: str, path: str,
         body: Any = None) -> httpx.Response:
    headers = {"X-Auth-Token": token}
    if service == "compute":
        headers["OpenStack-API-Version"] = "compute 2.79"
    return httpx.request(method, cloud.url(service) + path, json=body, headers=headers,
                         timeout=30)


def _server(cloud: RunningCloud, token: str, name: str) -> str:
    """A server of the member's project, booted with its password token (fake driver)."""
    img = call(cloud, token, "image", "POST", "/v2/images", {
        "name": name, "disk_format": "raw", "container_format": "bare"}).json()
    r = httpx.put(cloud.url("image") + f"/v2/images/{img['id']}/file", content=b"\0" * 1024,
                  headers={"X-Auth-Token": token, "Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    flavors = call(cloud, token, "compute", "GET", "/v2.1/flavors").json()["flavors"]
    r = call(cloud, token, "compute", "POST", "/v2.1/servers", {"server": {
        "name": name, "imageRef": img["id"], "flavorRef": flavors[0]["id"],
        "networks": "none"}})
    assert r.status_code == 202, r.text
    sid = str(r.json()["server"]["id"])
    deadline = time.monotonic() + 30
    while call(cloud, token, "compute", "GET", f"/v2.1/servers/{sid}").json()[
            "server"]["status"] != "ACTIVE":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return sid


def test_get_servers_only_credential_is_held_to_its_rule(cloud: RunningCloud,
                                                        member: Member) -> None:
    sid = _server(cloud, member.token, "kept")
    cred = member.create_cred([_rule("compute", "GET", "/v2.1/servers")])
    assert cred["access_rules"][0]["path"] == "/v2.1/servers"
    tok = member.cred_token(cred)

    listed = call(cloud, tok, "compute", "GET", "/v2.1/servers")
    assert listed.status_code == 200, listed.text
    assert sid in [s["id"] for s in listed.json()["servers"]]

    flavor = call(cloud, member.token, "compute", "GET", "/v2.1/flavors").json()["flavors"][0]
    refused = [
        ("compute", "POST", "/v2.1/servers", {"server": {
            "name": "x", "imageRef": "00000000-0000-0000-0000-000000000000",
            "flavorRef": flavor["id"], "networks": "none"}}),
        ("compute", "POST", f"/v2.1/servers/{sid}/action", {"os-stop": None}),
        ("compute", "DELETE", f"/v2.1/servers/{sid}", None),
        ("compute", "GET", f"/v2.1/servers/{sid}", None),
        ("compute", "GET", "/v2.1/servers/detail", None),
        ("compute", "HEAD", "/v2.1/servers", None),
        ("compute", "GET", f"/v2.1/{member.project_id}/servers", None),
        ("network", "GET", "/v2.0/networks", None),
        ("network", "POST", "/v2.0/networks", {"network": {"name": "n"}}),
        ("image", "GET", "/v2/images", None),
        ("placement", "GET", "/resource_providers", None),
        ("identity", "GET", "/v3/projects", None),
        ("identity", "POST", f"/v3/users/{member.user_id}/application_credentials",
         {"application_credential": {"name": "nested"}}),
    ]
    for service, method, path, body in refused:
        r = call(cloud, tok, service, method, path, body)
        assert r.status_code == 401, (service, method, path, r.status_code, r.text)
        assert r.headers.get("WWW-Authenticate", "").startswith("Keystone uri="), path

    # Nothing of that happened: the server is still there and running, no network was made.
    srv = call(cloud, member.token, "compute", "GET", f"/v2.1/servers/{sid}").json()["server"]
    assert srv["status"] == "ACTIVE"
    nets = call(cloud, member.token, "network", "GET", "/v2.0/networks?name=n").json()
    assert [n for n in nets["networks"] if n["project_id"] == member.project_id] == []

    # Version documents and health checks stay public; the token may validate itself
    # (with the access-rules header a keystonemiddleware sends).
    for service, path in (("compute", "/"), ("compute", "/v2.1"), ("network", "/"),
                          ("image", "/versions"), ("placement", "/"), ("identity", "/v3"),
                          ("compute", "/healthcheck")):
        assert call(cloud, tok, service, "GET", path).status_code in (200, 300), path
    own = httpx.get(cloud.auth_url + "/auth/tokens", headers={
        "X-Auth-Token": tok, "X-Subject-Token": tok, "OpenStack-Identity-Access-Rules": "1.0"})
    assert own.status_code == 200, own.text
    shown = own.json()["token"]["application_credential"]
    assert shown["restricted"] is True
    assert shown["access_rules"] == [{"id": cred["access_rules"][0]["id"],
                                      "service": "compute", "path": "/v2.1/servers",
                                      "method": "GET"}]


def test_validators_must_declare_access_rule_support(cloud: RunningCloud,
                                                      member: Member) -> None:
    """Keystone shows a token with access rules only to validators that enforce them."""
    tok = member.cred_token(member.create_cred([_rule("compute", "GET", "/v2.1/servers")]))
    admin = cloud.token()
    url = cloud.auth_url + "/auth/tokens"
    for headers in ({}, {"OpenStack-Identity-Access-Rules": "0.9"},
                    {"OpenStack-Identity-Access-Rules": "x"}):
        r = httpx.get(url, headers={"X-Auth-Token": admin, "X-Subject-Token": tok, **headers})
        assert r.status_code == 404, (headers, r.text)
        assert httpx.head(url, headers={"X-Auth-Token": admin, "X-Subject-Token": tok,
                                        **headers}).status_code == 404
    r = httpx.get(url, headers={"X-Auth-Token": admin, "X-Subject-Token": tok,
                                "OpenStack-Identity-Access-Rules": "1"})
    assert r.status_code == 200, r.text


def test_wildcards_and_project_id_paths(cloud: RunningCloud, member: Member) -> None:
    sid = _server(cloud, member.token, "wild")
    cred = member.create_cred([
        _rule("compute", "GET", "/v2.1/servers/*"),          # one segment
        _rule("compute", "POST", "/v2.1/servers/**"),        # anything below
        _rule("compute", "GET", "/v2.1/{project_id}/flavors"),
        _rule("image", "GET", "/v2/**"),
    ])
    tok = member.cred_token(cred)
    assert call(cloud, tok, "compute", "GET", f"/v2.1/servers/{sid}").status_code == 200
    assert call(cloud, tok, "compute", "GET", "/v2.1/servers/detail").status_code == 200
    assert call(cloud, tok, "compute", "GET", "/v2.1/servers").status_code == 401
    assert call(cloud, tok, "compute", "GET",
                f"/v2.1/servers/{sid}/os-interface").status_code == 401
    r = call(cloud, tok, "compute", "POST", f"/v2.1/servers/{sid}/action", {"os-stop": None})
    assert r.status_code == 202, r.text
    assert call(cloud, tok, "compute", "POST", "/v2.1/servers", {}).status_code == 401
    assert call(cloud, tok, "compute", "GET",
                f"/v2.1/{member.project_id}/flavors").status_code == 200
    assert call(cloud, tok, "compute", "GET", "/v2.1/flavors").status_code == 401
    assert call(cloud, tok, "image", "GET", "/v2/images").status_code == 200
    assert call(cloud, tok, "image", "DELETE", "/v2/images/x").status_code == 401
    assert call(cloud, tok, "network", "GET", "/v2.0/networks").status_code == 401


def test_credential_without_rules_is_not_limited(cloud: RunningCloud, member: Member) -> None:
    cred = member.create_cred(None)
    assert cred["access_rules"] == []
    tok = member.cred_token(cred)
    for service, path in (("compute", "/v2.1/servers/detail"), ("network", "/v2.0/networks"),
                          ("image", "/v2/images"), ("identity", "/v3/auth/projects")):
        r = call(cloud, tok, service, "GET", path)
        assert r.status_code == 200, (path, r.text)
    doc = httpx.get(cloud.auth_url + "/auth/tokens", headers={
        "X-Auth-Token": tok, "X-Subject-Token": tok}).json()["token"]
    assert "access_rules" not in doc["application_credential"]


def test_credentials_sharing_a_rule(cloud: RunningCloud, member: Member) -> None:
    """A second credential naming the first one's rule by id, and a third repeating it,
    share that rule; each works, also once the first is deleted."""
    first = member.create_cred([_rule("compute", "GET", "/v2.1/servers")])
    rule_id = first["access_rules"][0]["id"]
    by_id = member.create_cred([{"id": rule_id}])
    same = member.create_cred([_rule("compute", "GET", "/v2.1/servers")])
    for cred in (by_id, same):
        assert cred["access_rules"] == [{"id": rule_id, "service": "compute",
                                         "path": "/v2.1/servers", "method": "GET"}]
    first_token = member.cred_token(first)
    h = {"X-Auth-Token": member.token}
    rules = httpx.get(f"{cloud.auth_url}/users/{member.user_id}/access_rules",
                      headers=h).json()["access_rules"]
    assert [r["id"] for r in rules if r["path"] == "/v2.1/servers"] == [rule_id]
    r = httpx.delete(f"{cloud.auth_url}/users/{member.user_id}/application_credentials/"
                     f"{first['id']}", headers=h)
    assert r.status_code == 204
    # The deleted credential's tokens are gone at once (cached rules and all).
    assert call(cloud, first_token, "compute", "GET", "/v2.1/servers").status_code == 401
    for cred in (by_id, same):
        tok = member.cred_token(cred)
        assert call(cloud, tok, "compute", "GET", "/v2.1/servers").status_code == 200
        assert call(cloud, tok, "compute", "DELETE", "/v2.1/servers/x").status_code == 401
    # A rule named by an id the user does not have is refused, nothing is created.
    r = httpx.post(f"{cloud.auth_url}/users/{member.user_id}/application_credentials",
                   headers=h, json={"application_credential": {
                       "name": "bad-rule", "access_rules": [{"id": uuid.uuid4().hex}]}})
    assert r.status_code == 400, r.text
    names = [c["name"] for c in httpx.get(
        f"{cloud.auth_url}/users/{member.user_id}/application_credentials",
        headers=h).json()["application_credentials"]]
    assert "bad-rule" not in names


def test_openstackclient_with_a_restricted_credential(cloud: RunningCloud,
                                                      member: Member) -> None:
    cred = member.create_cred([_rule("compute", "GET", "/v2.1/servers/detail")])
    env = {k: v for k, v in cloud.os_env().items() if not k.startswith("OS_")}
    env.update({
        "OS_AUTH_URL": cloud.auth_url, "OS_AUTH_TYPE": "v3applicationcredential",
        "OS_APPLICATION_CREDENTIAL_ID": cred["id"],
        "OS_APPLICATION_CREDENTIAL_SECRET": cred["secret"],
        "OS_IDENTITY_API_VERSION": "3", "OS_REGION_NAME": "RegionOne",
        "OS_INTERFACE": "public",
    })
    ok = cloud.openstack("server", "list", "--no-name-lookup", "-f", "json", env=env)
    assert isinstance(json.loads(ok.stdout), list)
    refused = cloud.openstack("network", "list", env=env, check=False)
    assert refused.returncode != 0
    assert "401" in refused.stderr or "authentication" in refused.stderr.lower(), \
        refused.stderr


def test_restricted_credential_cannot_mint_ec2_credentials(cloud: RunningCloud,
                                                           member: Member) -> None:
    """The rules let the request through; the restriction (Keystone's ``unrestricted``
    flag) still refuses it, and even an unrestricted credential stays in its project."""
    ec2 = f"/v3/users/{member.user_id}/credentials/OS-EC2"
    rule = _rule("identity", "POST", "/v3/users/*/credentials/OS-EC2")
    restricted = member.cred_token(member.create_cred([rule]))
    r = call(cloud, restricted, "identity", "POST", ec2, {"tenant_id": member.project_id})
    assert r.status_code == 403, r.text
    free = member.cred_token(member.create_cred(None, unrestricted=True))
    admin_project = httpx.get(cloud.auth_url + "/auth/tokens", headers={
        "X-Auth-Token": cloud.token(), "X-Subject-Token": cloud.token()}).json()[
        "token"]["project"]["id"]
    r = call(cloud, free, "identity", "POST", ec2, {"tenant_id": admin_project})
    assert r.status_code == 403, r.text
    r = call(cloud, free, "identity", "POST", ec2, {"tenant_id": member.project_id})
    assert r.status_code == 201, r.text
    listed = call(cloud, member.token, "identity", "GET", ec2).json()["credentials"]
    assert [c["tenant_id"] for c in listed] == [member.project_id]


@pytest.mark.parametrize("rule", [
    {"service": "compute", "path": "/v2.1/servers"},                    # no method
    {"service": "compute", "method": "GET", "path": "v2.1/servers"},   # not a path
    {"service": "c" * 65, "method": "GET", "path": "/v2.1/servers"},   # longer than an id
    {"id": "x" * 65},
])
def test_malformed_access_rules_are_refused(cloud: RunningCloud, member: Member,
                                            rule: Rule) -> None:
    name = "bad-" + uuid.uuid4().hex[:8]
    h = {"X-Auth-Token": member.token}
    url = f"{cloud.auth_url}/users/{member.user_id}/application_credentials"
    r = httpx.post(url, headers=h, json={"application_credential": {
        "name": name, "access_rules": [rule]}})
    assert r.status_code == 400, r.text
    assert name not in [c["name"] for c in httpx.get(url, headers=h).json()[
        "application_credentials"]]
