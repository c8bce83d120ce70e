"""Image metadata-definition catalog (/v2/metadefs) over HTTP: CRUD, bad input, tenancy."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.functional.test_image_api import _project_user

NS = "/v2/metadefs/namespaces"


@pytest.fixture(scope="module")
def md(cloud: Any) -> Iterator[tuple[httpx.Client, httpx.Client, httpx.Client]]:
    """(admin, project A member, project B member) HTTP clients of the image API."""
    admin_token = cloud.token()
    a_token, _ = _project_user(cloud, admin_token)
    b_token, _ = _project_user(cloud, admin_token)
    clients = [httpx.Client(base_url=cloud.url("image"), headers={
        "X-Auth-Token": t, "Accept": "application/json"}, timeout=30)
        for t in (admin_token, a_token, b_token)]
    yield clients[0], clients[1], clients[2]
    for c in clients:
        c.close()


def _name(prefix: str = "ns") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_resource_types_seeded(md: Any) -> None:
    _, a, _ = md
    r = a.get("/v2/metadefs/resource_types")
    assert r.status_code == 200
    names = [t["name"] for t in r.json()["resource_types"]]
    assert "OS::Glance::Image" in names and "OS::Nova::Flavor" in names


def test_namespace_crud_and_protection(md: Any) -> None:
    admin, _, _ = md
    name = _name()
    r = admin.post(NS, json={
        "namespace": name, "display_name": "Disp", "description": "d", "visibility": "public",
        "protected": True, "resource_type_associations": [{"name": "OS::Glance::Image",
                                                           "prefix": "hw_"}],
        "properties": {"cpu": {"title": "CPU", "type": "integer", "minimum": 1}},
        "objects": [{"name": "obj1", "properties": {"x": {"title": "X", "type": "string"}}}],
        "tags": [{"name": "t1"}, {"name": "t2"}]})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["namespace"] == name and doc["protected"] is True
    assert doc["self"] == f"{NS}/{name}"
    shown = admin.get(f"{NS}/{name}").json()
    assert shown["properties"]["cpu"]["type"] == "integer"
    assert [o["name"] for o in shown["objects"]] == ["obj1"]
    assert {t["name"] for t in shown["tags"]} == {"t1", "t2"}
    assert shown["resource_type_associations"][0]["prefix"] == "hw_"
    # properties under the resource type's prefix
    prefixed = admin.get(f"{NS}/{name}", params={"resource_type": "OS::Glance::Image"}).json()
    assert "hw_cpu" in prefixed["properties"]
    assert admin.get(f"{NS}/{name}/properties/hw_cpu").json()["name"] == "hw_cpu"
    # list, filtered by resource type
    listed = admin.get(NS, params={"resource_types": "OS::Glance::Image"}).json()
    assert name in [n["namespace"] for n in listed["namespaces"]]
    assert admin.post(NS, json={"namespace": name}).status_code == 409
    assert admin.delete(f"{NS}/{name}").status_code == 403
    r = admin.put(f"{NS}/{name}", json={"namespace": name, "protected": False,
                                        "visibility": "private"})
    assert r.status_code == 200 and r.json()["protected"] is False
    assert r.json()["visibility"] == "private"
    assert admin.delete(f"{NS}/{name}").status_code == 204
    assert admin.get(f"{NS}/{name}").status_code == 404


def test_objects_properties_tags_associations(md: Any) -> None:
    _, a, _ = md
    name = _name()
    assert a.post(NS, json={"namespace": name}).status_code == 201
    base = f"{NS}/{name}"
    # objects
    r = a.post(f"{base}/objects", json={"name": "o1", "description": "first",
                                        "required": ["p"], "properties": {
                                            "p": {"title": "P", "type": "boolean"}}})
    assert r.status_code == 201, r.text
    assert a.post(f"{base}/objects", json={"name": "o1"}).status_code == 409
    r = a.put(f"{base}/objects/o1", json={"name": "o2"})
    assert r.status_code == 200 and r.json()["name"] == "o2"
    assert a.get(f"{base}/objects/o1").status_code == 404
    assert [o["name"] for o in a.get(f"{base}/objects").json()["objects"]] == ["o2"]
    assert a.delete(f"{base}/objects/o2").status_code == 204
    # properties
    r = a.post(f"{base}/properties", json={"name": "speed", "title": "Speed",
                                           "type": "string", "enum": ["a", "b"]})
    assert r.status_code == 201, r.text
    r = a.put(f"{base}/properties/speed", json={"name": "speed", "title": "S2",
                                                "type": "string"})
    assert r.status_code == 200 and r.json()["title"] == "S2"
    assert a.get(f"{base}/properties").json()["properties"]["speed"]["title"] == "S2"
    assert a.delete(f"{base}/properties/speed").status_code == 204
    assert a.get(f"{base}/properties").json()["properties"] == {}
    # tags: one, many (replace / append), rename, delete all
    assert a.post(f"{base}/tags/one").status_code == 201
    assert a.post(f"{base}/tags/one").status_code == 409
    r = a.post(f"{base}/tags", json={"tags": [{"name": "x"}, {"name": "y"}]})
    assert r.status_code == 201
    assert {t["name"] for t in a.get(f"{base}/tags").json()["tags"]} == {"x", "y"}
    r = a.post(f"{base}/tags", json={"tags": [{"name": "z"}]},
               headers={"X-Openstack-Append": "True"})
    assert r.status_code == 201
    assert a.put(f"{base}/tags/z", json={"name": "w"}).json()["name"] == "w"
    assert {t["name"] for t in a.get(f"{base}/tags").json()["tags"]} == {"x", "y", "w"}
    assert a.delete(f"{base}/tags").status_code == 204
    assert a.get(f"{base}/tags").json()["tags"] == []
    # resource type associations (an unknown type is created)
    r = a.post(f"{base}/resource_types", json={"name": "OS::Custom::Thing",
                                               "prefix": "c_"})
    assert r.status_code == 201 and r.json()["name"] == "OS::Custom::Thing"
    assert a.post(f"{base}/resource_types", json={"name": "OS::Custom::Thing"}
                  ).status_code == 409
    assocs = a.get(f"{base}/resource_types").json()["resource_type_associations"]
    assert [x["name"] for x in assocs] == ["OS::Custom::Thing"]
    assert a.delete(f"{base}/resource_types/OS::Custom::Thing").status_code == 204
    assert a.delete(f"{base}/resource_types/OS::Custom::Thing").status_code == 404
    assert a.delete(base).status_code == 204


@pytest.mark.parametrize("path,body", [
    (NS, {}),
    (NS, {"namespace": ""}),
    (NS, {"namespace": "x" * 81}),
    (NS, {"namespace": "ok", "visibility": "secret"}),
    (NS, {"namespace": "ok", "protected": "yes"}),
    (NS, {"namespace": "ok", "bogus": 1}),
    (NS, {"namespace": "ok", "properties": {"p": {"title": "t", "type": "nope"}}}),
    (NS, {"namespace": "ok", "properties": {"p": {"type": "string"}}}),
    (NS, {"namespace": "ok", "tags": "nope"}),
    (NS, {"namespace": "ok", "resource_type_associations": [{"prefix": "x"}]}),
    (NS, []),
])
def test_bad_namespace_bodies_are_400(md: Any, path: str, body: Any) -> None:
    admin, _, _ = md
    r = admin.post(path, json=body)
    assert r.status_code == 400, r.text
    assert admin.get(f"{NS}/ok").status_code == 404


def test_bad_input_never_500(md: Any) -> None:
    _, a, _ = md
    name = _name()
    assert a.post(NS, json={"namespace": name}).status_code == 201
    base = f"{NS}/{name}"
    assert a.post(NS, content=b"{not json", headers={
        "Content-Type": "application/json"}).status_code == 400
    assert a.post(f"{base}/objects", json={"description": "no name"}).status_code == 400
    assert a.post(f"{base}/objects", json={"name": "o", "required": "p"}).status_code == 400
    assert a.post(f"{base}/properties", json={"name": "p", "title": "t"}).status_code == 400
    assert a.post(f"{base}/tags", json={"tags": [{"name": "d"}, {"name": "d"}]}
                  ).status_code == 409
    assert a.put(f"{base}/tags/none", json={"name": "x"}).status_code == 404
    assert a.get(NS, params={"limit": "x"}).status_code == 400
    assert a.get(NS, params={"sort_key": "nope"}).status_code == 400
    assert a.get(NS, params={"marker": "missing-ns"}).status_code == 400
    assert a.get(f"{NS}/missing/objects").status_code == 404
    assert a.delete(base).status_code == 204


def test_tenancy(md: Any) -> None:
    admin, a, b = md
    private, public = _name("priv"), _name("pub")
    assert a.post(NS, json={"namespace": private}).status_code == 201
    assert a.post(f"{NS}/{private}/tags/t").status_code == 201
    assert admin.post(NS, json={"namespace": public, "visibility": "public"}
                      ).status_code == 201
    # B can neither see nor touch A's private namespace (404, not 403)
    assert b.get(f"{NS}/{private}").status_code == 404
    assert b.get(f"{NS}/{private}/tags").status_code == 404
    assert b.delete(f"{NS}/{private}").status_code == 404
    assert private not in [n["namespace"] for n in b.get(NS).json()["namespaces"]]
    assert private in [n["namespace"] for n in admin.get(NS).json()["namespaces"]]
    # everyone reads a public namespace; only its owner (or admin) changes it
    assert b.get(f"{NS}/{public}").status_code == 200
    assert b.post(f"{NS}/{public}/tags/t").status_code == 403
    assert b.put(f"{NS}/{public}", json={"namespace": public, "description": "x"}
                 ).status_code == 403
    assert b.delete(f"{NS}/{public}").status_code == 403
    # a member cannot give a namespace to another project
    assert a.post(NS, json={"namespace": _name(), "owner": "someone-else"}
                  ).status_code == 403
    assert admin.delete(f"{NS}/{private}").status_code == 204
    assert admin.delete(f"{NS}/{public}").status_code == 204


def test_metadef_schemas(md: Any) -> None:
    _, a, _ = md
    for name in ("namespace", "namespaces", "object", "objects", "property", "properties",
                 "tag", "tags", "resource_type", "resource_types"):
        r = a.get(f"/v2/schemas/metadefs/{name}")
        assert r.status_code == 200 and "properties" in r.json()
