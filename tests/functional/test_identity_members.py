"""Show, update and delete of identity's simpler resources (``identity/api_members.py``):
regions, services, endpoints, policies, OAuth1 consumers, endpoint groups, registered limits
and limits — each verb's policy, body checks and answers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import RunningCloud
from tests.functional.test_identity_api import Client, _name


@pytest.fixture
def admin(cloud: RunningCloud) -> Iterator[Client]:
    c = Client(cloud, cloud.token())
    yield c
    c.http.close()


def _roundtrip(admin: Client, path: str, key: str, patch: dict[str, object]
               ) -> dict[str, object]:
    """GET, PATCH (answers the changed document), DELETE, then GET and DELETE are 404."""
    got = admin.get(path)
    assert got.status_code == 200, got.text
    assert got.json()[key]["links"]["self"].endswith(path.removeprefix("/v3"))
    changed = admin.patch(path, json={key: patch})
    assert changed.status_code == 200, changed.text
    assert admin.get(path).json()[key] == changed.json()[key]
    assert admin.patch(path, json={key: "nope"}).status_code == 400
    assert admin.patch(path, json={"other": patch}).status_code == 400
    assert admin.delete(path).status_code == 204
    assert admin.get(path).status_code == 404
    assert admin.delete(path).status_code == 404
    assert admin.patch(path, json={key: patch}).status_code == 404
    return dict(changed.json()[key])


def test_catalog_members(admin: Client) -> None:
    rid = _name("r")
    assert admin.put(f"/regions/{rid}", json={"region": {}}).status_code == 201
    region = _roundtrip(admin, f"/regions/{rid}", "region",
                        {"description": "d", "colour": "blue"})
    assert (region["description"], region["colour"]) == ("d", "blue")

    svc = admin.post("/services", json={"service": {"type": _name("t")}}).json()["service"]
    rid2 = _name("r")
    admin.put(f"/regions/{rid2}", json={"region": {}})
    ep = admin.post("/endpoints", json={"endpoint": {
        "service_id": svc["id"], "interface": "public", "url": "http://a.example/"}}
    ).json()["endpoint"]
    # A legacy ``region`` (no ``region_id``) names the region; unknown fields are kept.
    endpoint = _roundtrip(admin, f"/endpoints/{ep['id']}", "endpoint",
                          {"region": rid2, "url": "http://b.example/", "x": 1})
    assert (endpoint["region_id"], endpoint["url"], endpoint["x"]) == (
        rid2, "http://b.example/", 1)
    service = _roundtrip(admin, f"/services/{svc['id']}", "service",
                         {"name": "renamed", "enabled": False})
    assert (service["name"], service["enabled"]) == ("renamed", False)
    admin.delete(f"/regions/{rid2}")


def test_extension_members(admin: Client) -> None:
    pol = admin.post("/policies", json={"policy": {"blob": "{}", "type": "a/b"}}
                     ).json()["policy"]
    # An ``id`` in a policy update is dropped, not applied.
    policy = _roundtrip(admin, f"/policies/{pol['id']}", "policy",
                        {"id": "other", "type": "c/d"})
    assert (policy["id"], policy["type"]) == (pol["id"], "c/d")

    con = admin.post("/OS-OAUTH1/consumers", json={"consumer": {}}).json()["consumer"]
    path = f"/OS-OAUTH1/consumers/{con['id']}"
    bad = admin.patch(path, json={"consumer": {"id": "other"}})
    assert bad.status_code == 400
    assert bad.json()["error"]["message"] == "Cannot change consumer id."
    consumer = _roundtrip(admin, path, "consumer", {"id": con["id"], "description": "d"})
    assert consumer["description"] == "d" and "secret" not in consumer

    grp = admin.post("/OS-EP-FILTER/endpoint_groups", json={"endpoint_group": {
        "name": _name("g"), "filters": {"interface": "public"}}}).json()["endpoint_group"]
    group = _roundtrip(admin, f"/OS-EP-FILTER/endpoint_groups/{grp['id']}", "endpoint_group",
                       {"description": "d"})
    assert group["description"] == "d"


def test_limit_members(admin: Client) -> None:
    svc = admin.post("/services", json={"service": {"type": _name("t")}}).json()["service"]
    reg = admin.post("/registered_limits", json={"registered_limits": [{
        "service_id": svc["id"], "resource_name": "cores", "default_limit": 5}]}
    ).json()["registered_limits"][0]
    project = admin.post("/projects", json={"project": {"name": _name("p")}}
                         ).json()["project"]
    limit = admin.post("/limits", json={"limits": [{
        "service_id": svc["id"], "project_id": project["id"], "resource_name": "cores",
        "resource_limit": 7}]}).json()["limits"][0]
    changed = _roundtrip(admin, f"/limits/{limit['id']}", "limit", {"resource_limit": 9})
    assert changed["resource_limit"] == 9
    changed = _roundtrip(admin, f"/registered_limits/{reg['id']}", "registered_limit",
                         {"default_limit": 6})
    assert changed["default_limit"] == 6
    admin.delete(f"/projects/{project['id']}")
    admin.delete(f"/services/{svc['id']}")


def test_reader_cannot_change_members(cloud: RunningCloud, admin: Client) -> None:
    rid = _name("r")
    admin.put(f"/regions/{rid}", json={"region": {}})
    pol = admin.post("/policies", json={"policy": {"blob": "{}", "type": "a/b"}}
                     ).json()["policy"]
    user = admin.post("/users", json={"user": {"name": _name("u"), "password": "pw-x1"}}
                      ).json()["user"]
    reader = admin.get("/roles", params={"name": "reader"}).json()["roles"][0]
    pid = admin.get("/projects", params={"name": "admin"}).json()["projects"][0]["id"]
    admin.put(f"/projects/{pid}/users/{user['id']}/roles/{reader['id']}")
    token = cloud.token(user=user["name"], password="pw-x1", project="admin")
    c = Client(cloud, token)
    try:
        for path, key in ((f"/regions/{rid}", "region"), (f"/policies/{pol['id']}", "policy")):
            assert c.patch(path, json={key: {"description": "x"}}).status_code == 403
            assert c.delete(path).status_code == 403
            assert admin.get(path).status_code == 200
        assert c.get(f"/regions/{rid}").status_code == 200
        assert c.get(f"/policies/{pol['id']}").status_code == 403
    finally:
        c.http.close()
        admin.delete(f"/users/{user['id']}")
        admin.delete(f"/regions/{rid}")
        admin.delete(f"/policies/{pol['id']}")


def test_limit_batch_creates(admin: Client) -> None:
    """``POST /v3/registered_limits`` and ``/v3/limits``: a list, all made at once (201 with
    every document), a malformed body or a duplicate stores nothing."""
    svc = admin.post("/services", json={"service": {"type": _name("t")}}).json()["service"]
    project = admin.post("/projects", json={"project": {"name": _name("p")}}).json()["project"]
    try:
        for bad in ({"registered_limits": {}}, {"registered_limits": [{"default_limit": 1}]},
                    {"other": []}):
            assert admin.post("/registered_limits", json=bad).status_code == 400
        regs = [{"service_id": svc["id"], "resource_name": n, "default_limit": 5}
                for n in ("cores", "ram")]
        made = admin.post("/registered_limits", json={"registered_limits": regs})
        assert made.status_code == 201, made.text
        docs = made.json()["registered_limits"]
        assert [d["resource_name"] for d in docs] == ["cores", "ram"]
        assert all(d["links"]["self"].endswith(f"/v3/registered_limits/{d['id']}")
                   and d["region_id"] is None and d["description"] is None for d in docs)
        dup = admin.post("/registered_limits", json={"registered_limits": regs[:1]})
        assert dup.status_code == 409
        limits = [{"service_id": svc["id"], "project_id": project["id"],
                   "resource_name": "cores", "resource_limit": 3}]
        assert admin.post("/limits", json={"limits": {}}).status_code == 400
        made = admin.post("/limits", json={"limits": limits})
        assert made.status_code == 201, made.text
        (doc,) = made.json()["limits"]
        assert doc["project_id"] == project["id"] and doc["domain_id"] is None
        assert doc["links"]["self"].endswith(f"/v3/limits/{doc['id']}")
        assert admin.post("/limits", json={"limits": limits}).status_code == 409
        listed = admin.get("/limits", params={"project_id": project["id"]}).json()["limits"]
        assert [x["id"] for x in listed] == [doc["id"]]
        admin.delete(f"/limits/{doc['id']}")
        for d in docs:
            admin.delete(f"/registered_limits/{d['id']}")
    finally:
        admin.delete(f"/projects/{project['id']}")
        admin.delete(f"/services/{svc['id']}")
