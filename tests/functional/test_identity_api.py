"""Identity API behaviour over HTTP: bad input, security, tenancy, revocation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import RunningCloud


class Client:
    def __init__(self, cloud: RunningCloud, token: str) -> None:
        self.base = cloud.auth_url
        self.http = httpx.Client(headers={"X-Auth-Token": token}, timeout=30)

    def __getattr__(self, method: str) -> Any:
        def call(path: str, **kw: Any) -> httpx.Response:
            return self.http.request(method.upper(), self.base + path, **kw)
        return call


@pytest.fixture
def admin(cloud: RunningCloud) -> Iterator[Client]:
    c = Client(cloud, cloud.token())
    yield c
    c.http.close()


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def user_in_project(admin: Client) -> Iterator[dict[str, str]]:
    """A fresh project with a member user; removed afterwards."""
    pname, uname = _name("p"), _name("u")
    p = admin.post("/projects", json={"project": {"name": pname}}).json()["project"]
    u = admin.post("/users", json={"user": {"name": uname, "password": "pw-" + uname}}
                   ).json()["user"]
    member = admin.get("/roles", params={"name": "member"}).json()["roles"][0]
    assert admin.put(f"/projects/{p['id']}/users/{u['id']}/roles/{member['id']}"
                     ).status_code == 204
    yield {"project_id": p["id"], "project": pname, "user_id": u["id"], "user": uname,
           "password": "pw-" + uname, "member_role": member["id"]}
    admin.delete(f"/users/{u['id']}")
    admin.delete(f"/projects/{p['id']}")


def _auth(cloud: RunningCloud, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(cloud.auth_url + "/auth/tokens", json=body)


def _pw_body(user: str, password: str, project: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"auth": {"identity": {"methods": ["password"], "password": {
        "user": {"name": user, "domain": {"id": "default"}, "password": password}}}}}
    if project:
        body["auth"]["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
    return body


def _err(r: httpx.Response, code: int) -> dict[str, Any]:
    assert r.status_code == code, (r.status_code, r.text)
    body = r.json()["error"]
    assert body["code"] == code and body["title"] and body["message"]
    return body


def test_version_documents_and_health(cloud: RunningCloud) -> None:
    r = httpx.get(cloud.url("identity") + "/")
    assert r.status_code == 300
    assert r.json()["versions"]["values"][0]["id"].startswith("v3")
    r = httpx.get(cloud.auth_url)
    assert r.status_code == 200 and r.json()["version"]["status"] == "stable"
    assert httpx.get(cloud.url("identity") + "/healthcheck").text == "OK"
    assert r.headers["x-openstack-request-id"].startswith("req-")


def test_token_document(cloud: RunningCloud) -> None:
    r = _auth(cloud, _pw_body("admin", cloud.admin_password, "admin"))
    assert r.status_code == 201
    tok = r.json()["token"]
    assert set(tok) >= {"methods", "user", "audit_ids", "expires_at", "issued_at", "project",
                        "roles", "catalog", "is_domain"}
    assert tok["methods"] == ["password"]
    assert {"admin", "member", "reader"} <= {x["name"] for x in tok["roles"]}
    assert any(s["type"] == "identity" for s in tok["catalog"])
    r2 = httpx.post(cloud.auth_url + "/auth/tokens?nocatalog",
                    json=_pw_body("admin", cloud.admin_password, "admin"))
    assert "catalog" not in r2.json()["token"]
    # HEAD and GET validation, rescoping by token keeps expiry and audit chain.
    t = r.headers["X-Subject-Token"]
    h = {"X-Auth-Token": t, "X-Subject-Token": t}
    assert httpx.head(cloud.auth_url + "/auth/tokens", headers=h).status_code == 200
    rescoped = _auth(cloud, {"auth": {"identity": {"methods": ["token"], "token": {"id": t}},
                                      "scope": {"project": {"name": "admin",
                                                            "domain": {"name": "Default"}}}}})
    assert rescoped.status_code == 201
    rt = rescoped.json()["token"]
    assert rt["expires_at"] == tok["expires_at"]
    assert rt["audit_ids"][1] == tok["audit_ids"][0]
    # Unscoped and system-scoped tokens.
    un = _auth(cloud, {"auth": {"identity": {"methods": ["token"], "token": {"id": t}},
                                "scope": "unscoped"}})
    assert un.status_code == 201 and "roles" not in un.json()["token"]
    sysr = _auth(cloud, {"auth": {"identity": {"methods": ["token"], "token": {"id": t}},
                                  "scope": {"system": {"all": True}}}})
    assert sysr.status_code == 201 and sysr.json()["token"]["system"] == {"all": True}
    dom = _auth(cloud, {"auth": {"identity": {"methods": ["token"], "token": {"id": t}},
                                 "scope": {"domain": {"id": "default"}}}})
    assert dom.status_code == 401  # admin holds no role on the domain itself


def test_wrong_password_and_unknown_user_are_the_same_401(cloud: RunningCloud) -> None:
    a = _auth(cloud, _pw_body("admin", "wrong-password"))
    b = _auth(cloud, _pw_body("no-such-user-" + uuid.uuid4().hex, "wrong-password"))
    assert _err(a, 401) == _err(b, 401)
    assert "admin" not in a.text and "wrong-password" not in a.text
    assert a.headers["www-authenticate"].startswith("Keystone uri=")


@pytest.mark.parametrize("body,code", [
    ("{not json", 400),
    ('{"auth": 3}', 400),
    ('{"auth": {"identity": {"methods": "password"}}}', 400),
    ('{"auth": {"identity": {"methods": ["password"]}}}', 400),
    ('{"auth": {"identity": {"methods": ["totally-unknown"], "totally-unknown": {}}}}', 401),
    ('{"auth": {"identity": {"methods": ["token"], "token": {"id": "garbage"}}}}', 401),
    ('[]', 400),
])
def test_malformed_auth_requests(cloud: RunningCloud, body: str, code: int) -> None:
    r = httpx.post(cloud.auth_url + "/auth/tokens", content=body,
                   headers={"Content-Type": "application/json"})
    _err(r, code)


def test_bad_input_changes_nothing(admin: Client) -> None:
    before = admin.get("/users").json()["users"]
    cases = [
        ({"user": {"name": ""}}, 400),
        ({"user": {"name": 5}}, 400),
        ({"user": {"name": "x", "enabled": "yes"}}, 400),
        ({"user": {"name": "x", "domain_id": "nope"}}, 404),
        ({"usr": {"name": "x"}}, 400),
        ({"user": {"name": "x", "options": {"bogus": True}}}, 400),
    ]
    for body, code in cases:
        _err(admin.post("/users", json=body), code)
    _err(admin.post("/users", content=b"{", headers={"Content-Type": "application/json"}), 400)
    _err(admin.post("/users", content=b"x" * 200_000,
                    headers={"Content-Type": "application/json"}), 413)
    assert admin.get("/users").json()["users"] == before
    _err(admin.get("/users/" + uuid.uuid4().hex), 404)
    _err(admin.patch("/projects/" + uuid.uuid4().hex, json={"project": {"name": "y"}}), 404)
    _err(admin.get("/no/such/path"), 404)
    _err(admin.post("/projects", json={"project": {"name": "admin"}}), 409)


def test_passwords_never_returned(admin: Client) -> None:
    name = _name("pwcheck")
    r = admin.post("/users", json={"user": {"name": name, "password": "Sup3r-Secret"}})
    assert r.status_code == 201 and "Sup3r-Secret" not in r.text and "password\"" not in r.text
    uid = r.json()["user"]["id"]
    assert "Sup3r" not in admin.get(f"/users/{uid}").text
    admin.delete(f"/users/{uid}")


def test_non_admin_is_forbidden_and_isolated(cloud: RunningCloud, admin: Client,
                                            user_in_project: dict[str, str]) -> None:
    u = user_in_project
    tok = cloud.token(u["user"], u["password"], u["project"])
    me = Client(cloud, tok)
    for method, path, body in [
        ("get", "/users", None), ("post", "/users", {"user": {"name": "evil"}}),
        ("post", "/projects", {"project": {"name": "evil"}}),
        ("post", "/roles", {"role": {"name": "evil"}}),
        ("get", "/endpoints", None),
        ("post", "/services", {"service": {"type": "evil"}}),
        ("get", "/projects", None),
    ]:
        _err(getattr(me, method)(path, json=body) if body else getattr(me, method)(path), 403)
    # Own user and project are visible; another project is not.
    assert me.get(f"/users/{u['user_id']}").status_code == 200
    assert me.get(f"/projects/{u['project_id']}").status_code == 200
    admin_project = admin.get("/projects", params={"name": "admin"}).json()["projects"][0]
    _err(me.get(f"/projects/{admin_project['id']}"), 403)
    projects = me.get(f"/users/{u['user_id']}/projects").json()["projects"]
    assert [p["id"] for p in projects] == [u["project_id"]]
    assert [p["id"] for p in me.get("/auth/projects").json()["projects"]] == [u["project_id"]]
    me.http.close()


def _valid(cloud: RunningCloud, admin: Client, token: str) -> int:
    return admin.get("/auth/tokens", headers={"X-Subject-Token": token}).status_code


def test_revocation_events(cloud: RunningCloud, admin: Client,
                           user_in_project: dict[str, str]) -> None:
    u = user_in_project
    # Token delete.
    t = cloud.token(u["user"], u["password"], u["project"])
    assert _valid(cloud, admin, t) == 200
    assert admin.delete("/auth/tokens", headers={"X-Subject-Token": t}).status_code == 204
    assert _valid(cloud, admin, t) == 404
    assert httpx.get(cloud.auth_url + "/users/" + u["user_id"],
                     headers={"X-Auth-Token": t}).status_code == 401
    # Role assignment removed.
    t = cloud.token(u["user"], u["password"], u["project"])
    assert admin.delete(f"/projects/{u['project_id']}/users/{u['user_id']}/roles/"
                        f"{u['member_role']}").status_code == 204
    assert _valid(cloud, admin, t) == 404
    assert admin.put(f"/projects/{u['project_id']}/users/{u['user_id']}/roles/"
                     f"{u['member_role']}").status_code == 204
    # Project disabled.
    t = cloud.token(u["user"], u["password"], u["project"])
    admin.patch(f"/projects/{u['project_id']}", json={"project": {"enabled": False}})
    assert _valid(cloud, admin, t) == 404
    _err(_auth(cloud, _pw_body(u["user"], u["password"], u["project"])), 401)
    admin.patch(f"/projects/{u['project_id']}", json={"project": {"enabled": True}})
    # Password change by the user: old tokens die, the new password works.
    t = cloud.token(u["user"], u["password"], u["project"])
    r = httpx.post(f"{cloud.auth_url}/users/{u['user_id']}/password",
                   headers={"X-Auth-Token": t},
                   json={"user": {"original_password": u["password"], "password": "N3w-pass"}})
    assert r.status_code == 204, r.text
    assert _valid(cloud, admin, t) == 404
    t = cloud.token(u["user"], "N3w-pass", u["project"])
    # User disabled.
    admin.patch(f"/users/{u['user_id']}", json={"user": {"enabled": False}})
    assert _valid(cloud, admin, t) == 404
    _err(_auth(cloud, _pw_body(u["user"], "N3w-pass", u["project"])), 401)


def test_role_assignments_effective(admin: Client, user_in_project: dict[str, str]) -> None:
    u = user_in_project
    r = admin.get("/role_assignments", params={"user.id": u["user_id"], "effective": "",
                                               "include_names": "1"})
    assert r.status_code == 200
    names = {a["role"]["name"] for a in r.json()["role_assignments"]}
    assert names == {"member", "reader"}  # member implies reader


def test_groups_grant_roles(cloud: RunningCloud, admin: Client,
                            user_in_project: dict[str, str]) -> None:
    u = user_in_project
    g = admin.post("/groups", json={"group": {"name": _name("g")}}).json()["group"]
    assert admin.put(f"/groups/{g['id']}/users/{u['user_id']}").status_code == 204
    reader = admin.get("/roles", params={"name": "reader"}).json()["roles"][0]
    admin_project = admin.get("/projects", params={"name": "admin"}).json()["projects"][0]
    assert admin.put(f"/projects/{admin_project['id']}/groups/{g['id']}/roles/{reader['id']}"
                     ).status_code == 204
    r = _auth(cloud, _pw_body(u["user"], u["password"], "admin"))
    assert r.status_code == 201
    assert [x["name"] for x in r.json()["token"]["roles"]] == ["reader"]
    admin.delete(f"/groups/{g['id']}")
    _err(_auth(cloud, _pw_body(u["user"], u["password"], "admin")), 401)


@pytest.mark.parametrize("target", ["projects", "domains", "system", "OS-INHERIT"])
@pytest.mark.parametrize("actor", ["users", "groups"])
def test_grant_routes_each_actor_and_target(admin: Client, target: str, actor: str) -> None:
    """PUT, HEAD, GET (list) and DELETE of a grant for every actor and target kind, inherited
    grants included: 204s, the role listed exactly while granted, then 404s."""
    reader = admin.get("/roles", params={"name": "reader"}).json()["roles"][0]
    if actor == "users":
        who = admin.post("/users", json={"user": {"name": _name("u")}}).json()["user"]
    else:
        who = admin.post("/groups", json={"group": {"name": _name("g")}}).json()["group"]
    p = admin.post("/projects", json={"project": {"name": _name("p")}}).json()["project"]
    base = {"projects": f"/projects/{p['id']}/{actor}/{who['id']}/roles",
            "domains": f"/domains/default/{actor}/{who['id']}/roles",
            "system": f"/system/{actor}/{who['id']}/roles",
            "OS-INHERIT": f"/OS-INHERIT/projects/{p['id']}/{actor}/{who['id']}/roles"}[target]
    role = f"{base}/{reader['id']}" + ("/inherited_to_projects" if target == "OS-INHERIT"
                                       else "")
    listing = base + ("/inherited_to_projects" if target == "OS-INHERIT" else "")
    try:
        assert admin.head(role).status_code == 404
        assert admin.put(role).status_code == 204
        assert admin.put(role).status_code == 204  # idempotent
        assert admin.head(role).status_code == 204
        assert [r["id"] for r in admin.get(listing).json()["roles"]] == [reader["id"]]
        assert admin.delete(role).status_code == 204
        assert admin.head(role).status_code == 404
        assert admin.get(listing).json()["roles"] == []
        _err(admin.delete(role), 404)
        missing = role.replace(who["id"], "0" * 32)
        _err(admin.put(missing), 404)
    finally:
        admin.delete(f"/{actor}/{who['id']}")
        admin.delete(f"/projects/{p['id']}")
