"""The block-storage changes of one row's keys and names, over HTTP: volume and snapshot
updates and metadata (set, replace, show, delete), a volume's image metadata, the specs of
volume types, group types and QoS specs, and the 404 of each when a key is missing."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.conftest import RunningCloud


def _wait(c: httpx.Client, url: str, key: str, want: str) -> None:
    deadline = time.monotonic() + 30
    while (status := c.get(url).json()[key]["status"]) != want:
        assert status != "error" and time.monotonic() < deadline, status
        time.sleep(0.1)


def _answer(r: httpx.Response) -> tuple[int, Any]:
    return r.status_code, r.json() if r.content else None


def _client(cloud: RunningCloud) -> tuple[httpx.Client, str]:
    """A client of the admin's project at volume 3.25, and the project's volume API URL."""
    token = cloud.token()
    c = httpx.Client(headers={"X-Auth-Token": token, "OpenStack-API-Version": "volume 3.25"},
                     timeout=30)
    project = c.get(f"{cloud.url('identity')}/v3/auth/tokens",
                    headers={"X-Subject-Token": token}).json()["token"]["project"]["id"]
    return c, f"{cloud.url('volume')}/v3/{project}"


def _check_type_specs(c: httpx.Client, url: str, key: str, specs_key: str, what: str,
                      specs_word: str) -> str:
    """A volume or group type's specs: delete, read, set one key, the 404s and the 400 of a
    body naming another key; a duplicate name is a 409 on create and on rename. The type's
    id."""
    name = f"rc-{key}"
    tid = c.post(url, json={key: {"name": name, specs_key: {"x": "1", "y": "2"}}}
                 ).json()[key]["id"]
    specs = f"{url}/{tid}/{specs_key}"
    gone = (404, {"itemNotFound": {
        "code": 404, "message": f"{what} {tid} has no {specs_word} with key x."}})
    assert c.delete(f"{specs}/x").status_code == 202
    assert _answer(c.get(specs)) == (200, {specs_key: {"y": "2"}})
    assert _answer(c.delete(f"{specs}/x")) == gone
    assert _answer(c.get(f"{specs}/y")) == (200, {"y": "2"})
    assert _answer(c.put(f"{specs}/y", json={"y": "3"})) == (200, {"y": "3"})
    assert _answer(c.put(f"{specs}/y", json={"z": "3"})) == (400, {"badRequest": {
        "code": 400, "message": "Request body and URI mismatch"}})
    assert _answer(c.get(f"{specs}/x")) == gone
    taken = (409, {"conflictingRequest": {"code": 409, "message": f"{what} {name} already "
                                                                  "exists."}})
    assert _answer(c.post(url, json={key: {"name": name}})) == taken
    other = c.post(url, json={key: {"name": f"{name}2"}}).json()[key]["id"]
    assert _answer(c.put(f"{url}/{other}", json={key: {"name": name}})) == taken
    return str(tid)


def test_metadata_and_specs_of_volume_rows(cloud: RunningCloud) -> None:
    c, base = _client(cloud)
    vol = c.post(f"{base}/volumes", json={"volume": {"size": 1, "name": "rc1",
                                                     "metadata": {"a": "1"}}}).json()["volume"]
    _wait(c, f"{base}/volumes/{vol['id']}", "volume", "available")
    snap = c.post(f"{base}/snapshots", json={"snapshot": {
        "volume_id": vol["id"], "name": "rs1", "metadata": {"s": "1"}}}).json()["snapshot"]
    _wait(c, f"{base}/snapshots/{snap['id']}", "snapshot", "available")

    for kind, rid, first, label in (("volumes", vol["id"], "a", "Volume"),
                                    ("snapshots", snap["id"], "s", "Snapshot")):
        one = kind[:-1]
        url = f"{base}/{kind}/{rid}"
        r = c.put(url, json={one: {"name": "renamed", "description": "d",
                                   "metadata": {first: "2"}}})
        assert r.status_code == 200, r.text
        got = r.json()[one]
        assert (got["name"], got["description"], got["metadata"]) == (
            "renamed", "d", {first: "2"})
        assert _answer(c.post(f"{url}/metadata", json={"metadata": {"b": "3"}})) == (
            200, {"metadata": {first: "2", "b": "3"}})
        assert _answer(c.put(f"{url}/metadata/c", json={"meta": {"c": "4"}})) == (
            200, {"meta": {"c": "4"}})
        assert _answer(c.get(f"{url}/metadata/c")) == (200, {"meta": {"c": "4"}})
        assert c.delete(f"{url}/metadata/c").status_code == 200
        assert _answer(c.delete(f"{url}/metadata/c")) == (404, {"itemNotFound": {
            "code": 404, "message": f"{label} {rid} has no metadata with key c."}})
        assert _answer(c.get(f"{url}/metadata/c")) == (404, {"itemNotFound": {
            "code": 404, "message": f"{label} {rid} has no metadata with key c."}})
        assert _answer(c.put(f"{url}/metadata/c", json={"meta": {"d": "4"}})) == (
            400, {"badRequest": {"code": 400, "message": "Request body and URI mismatch"}})
        assert _answer(c.put(f"{url}/metadata", json={"metadata": {"z": "9"}})) == (
            200, {"metadata": {"z": "9"}})
        assert _answer(c.get(f"{url}/metadata")) == (200, {"metadata": {"z": "9"}})
        missing = f"{base}/{kind}/00000000-0000-0000-0000-000000000000"
        assert _answer(c.put(missing, json={one: {"name": "x"}}))[0] == 404
        assert _answer(c.post(f"{missing}/metadata", json={"metadata": {"b": "3"}}))[0] == 404

    # A volume's image metadata: set, unset, unset again (404).
    action = f"{base}/volumes/{vol['id']}/action"
    assert _answer(c.post(action, json={"os-set_image_metadata": {
        "metadata": {"k1": "v1", "k2": "v2"}}})) == (200, {"metadata": {"k1": "v1",
                                                                        "k2": "v2"}})
    assert _answer(c.post(action, json={"os-unset_image_metadata": {"key": "k1"}})) == (
        200, None)
    assert _answer(c.post(action, json={"os-show_image_metadata": {}})) == (
        200, {"metadata": {"k2": "v2"}})
    assert _answer(c.post(action, json={"os-unset_image_metadata": {"key": "k1"}})) == (
        404, {"itemNotFound": {"code": 404, "message":
                               f"Glance metadata for volume {vol['id']} cannot be found."}})

    # An action body names exactly one action; connection actions need a connector.
    for kind, rid in (("volume", vol["id"]), ("snapshot", snap["id"])):
        assert _answer(c.post(f"{base}/{kind}s/{rid}/action", json={
            "os-a": {}, "os-b": {}})) == (400, {"badRequest": {
                "code": 400, "message": f"There is no such action: a {kind} action body "
                                        "names exactly one action."}})
    for name in ("os-initialize_connection", "os-terminate_connection"):
        assert _answer(c.post(action, json={name: {}})) == (400, {"badRequest": {
            "code": 400, "message": "Must specify 'connector'"}})

    # Specs of a volume type, a group type and QoS specs.
    vt = _check_type_specs(c, f"{base}/types", "volume_type", "extra_specs", "Volume Type",
                           "extra specs")
    assert _answer(c.get(f"{base}/types/{vt}/encryption/provider")) == (
        404, {"itemNotFound": {"code": 404, "message": f"Volume type encryption for type "
                                                      f"{vt} does not exist."}})
    _check_type_specs(c, f"{base}/group_types", "group_type", "group_specs", "Group Type",
                      "specs")
    qos = c.post(f"{base}/qos-specs", json={"qos_specs": {
        "name": "rc-qos", "read_iops_sec": "10", "write_iops_sec": "20",
        "total_iops_sec": "30"}}).json()["qos_specs"]
    assert _answer(c.post(f"{base}/qos-specs", json={"qos_specs": {"name": "rc-qos"}})) == (
        409, {"conflictingRequest": {"code": 409, "message": "QoS Specs rc-qos already exists."}})
    keys = f"{base}/qos-specs/{qos['id']}/delete_keys"
    assert c.put(keys, json={"keys": ["read_iops_sec"]}).status_code == 202
    assert c.get(f"{base}/qos-specs/{qos['id']}").json()["qos_specs"]["specs"] == {
        "write_iops_sec": "20", "total_iops_sec": "30"}
    # All or nothing: a missing key leaves the others.
    assert _answer(c.put(keys, json={"keys": ["write_iops_sec", "nope"]})) == (
        404, {"itemNotFound": {"code": 404,
                               "message": f"QoS spec {qos['id']} has no key nope."}})
    assert c.get(f"{base}/qos-specs/{qos['id']}").json()["qos_specs"]["specs"] == {
        "write_iops_sec": "20", "total_iops_sec": "30"}

    # Deletes answer 202 and finish in the background; a force delete too.
    assert c.delete(f"{base}/snapshots/{snap['id']}").status_code == 202
    deadline = time.monotonic() + 30
    while c.get(f"{base}/snapshots/{snap['id']}").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert c.post(action, json={"os-force_delete": {}}).status_code == 202
    while c.get(f"{base}/volumes/{vol['id']}").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    c.close()


def test_status_and_flag_actions(cloud: RunningCloud) -> None:
    """The actions that change one field of a volume or snapshot (bootable, read-only,
    reset and update of a status): the change is seen, a refused one changes nothing."""
    c, base = _client(cloud)
    vol = c.post(f"{base}/volumes", json={"volume": {"size": 1, "name": "fl1"}}
                 ).json()["volume"]
    url = f"{base}/volumes/{vol['id']}"
    _wait(c, url, "volume", "available")
    action = f"{url}/action"
    assert c.post(action, json={"os-set_bootable": {"bootable": True}}).status_code == 200
    assert c.get(url).json()["volume"]["bootable"] == "true"
    assert c.post(action, json={"os-set_bootable": {"bootable": "maybe"}}).status_code == 400
    assert c.get(url).json()["volume"]["bootable"] == "true"
    assert c.post(action, json={"os-update_readonly_flag": {"readonly": True}}
                  ).status_code == 202
    assert c.get(url).json()["volume"]["metadata"]["readonly"] == "True"
    assert c.post(action, json={"os-update_readonly_flag": {"readonly": False}}
                  ).status_code == 202
    assert c.get(url).json()["volume"]["metadata"]["readonly"] == "False"
    assert c.post(action, json={"os-reset_status": {"status": "bogus"}}).status_code == 400
    assert c.post(action, json={"os-reset_status": {
        "status": "available", "attach_status": "bogus"}}).status_code == 400
    assert c.post(action, json={"os-reset_status": {"status": "error"}}).status_code == 202
    assert c.get(url).json()["volume"]["status"] == "error"
    assert c.post(action, json={"os-reset_status": {"status": "available"}}
                  ).status_code == 202
    missing = f"{base}/volumes/00000000-0000-0000-0000-000000000000/action"
    assert c.post(missing, json={"os-set_bootable": {"bootable": True}}).status_code == 404

    snap = c.post(f"{base}/snapshots", json={"snapshot": {"volume_id": vol["id"]}}
                  ).json()["snapshot"]
    surl = f"{base}/snapshots/{snap['id']}"
    _wait(c, surl, "snapshot", "available")
    sact = f"{surl}/action"
    refused = c.post(sact, json={"os-update_snapshot_status": {"status": "error"}})
    assert refused.status_code == 400, refused.text
    assert c.get(surl).json()["snapshot"]["status"] == "available"
    assert c.post(sact, json={"os-reset_status": {"status": "creating"}}).status_code == 202
    assert c.post(sact, json={"os-update_snapshot_status": {
        "status": "available", "progress": "100%"}}).status_code == 202
    got = c.get(surl).json()["snapshot"]
    assert (got["status"], got["os-extended-snapshot-attributes:progress"]) == (
        "available", "100%")
