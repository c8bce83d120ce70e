"""Volume type encryption (Cinder's ``/types/{id}/encryption``) through ``openstack volume
type create --encryption-*`` and HTTP: create, show, show one key, update, delete; admin
only; bad bodies 400; a type in use keeps its encryption; volumes of an encrypted type are
refused (no key manager) and nothing is stored."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import RunningCloud

pytestmark = pytest.mark.slow


def _json(cloud: RunningCloud, *args: str, env: dict[str, str] | None = None) -> Any:
    return json.loads(cloud.openstack(*args, "-f", "json", env=env).stdout)


def test_encryption_types(cloud: RunningCloud) -> None:
    admin = cloud.os_env()
    vt = _json(cloud, "volume", "type", "create", "--encryption-provider", "luks",
               "--encryption-cipher", "aes-xts-plain64", "--encryption-key-size", "256",
               "--encryption-control-location", "front-end", "enc-type", env=admin)
    shown = _json(cloud, "volume", "type", "show", "--encryption-type", "enc-type", env=admin)
    enc = shown["encryption"]
    assert (enc["provider"], enc["cipher"], enc["key_size"], enc["control_location"]) == (
        "luks", "aes-xts-plain64", 256, "front-end")

    project = _json(cloud, "project", "show", "admin", env=admin)["id"]
    base = cloud.url("volume") + f"/v3/{project}/types/{vt['id']}/encryption"
    h = {"X-Auth-Token": cloud.token()}
    doc = httpx.get(base, headers=h).json()
    assert doc["volume_type_id"] == vt["id"] and doc["deleted"] is False
    eid = doc["encryption_id"]
    assert httpx.get(f"{base}/cipher", headers=h).json() == {"cipher": "aes-xts-plain64"}
    assert httpx.get(f"{base}/nope", headers=h).status_code == 404
    # A second encryption for the type: 409; bad bodies: 400; nothing changes.
    r = httpx.post(base, headers=h, json={"encryption": {"provider": "x",
                                                         "control_location": "front-end"}})
    assert r.status_code == 409
    for bad in ({"encryption": {"provider": "x", "control_location": "middle"}},
                {"encryption": {"provider": "x", "control_location": "front-end",
                                "key_size": "big"}},
                {"encryption": {"provider": "x", "control_location": "front-end",
                                "colour": "red"}},
                {"encryption": "luks"}, []):
        assert httpx.put(f"{base}/{eid}", headers=h, json=bad).status_code == 400, bad
    assert httpx.get(f"{base}/provider", headers=h).json() == {"provider": "luks"}
    # Update, then the new values are shown.
    r = httpx.put(f"{base}/{eid}", headers=h, json={"encryption": {
        "key_size": 128, "control_location": "back-end"}})
    assert r.status_code == 200, r.text
    doc = httpx.get(base, headers=h).json()
    assert (doc["key_size"], doc["control_location"], doc["provider"]) == (
        128, "back-end", "luks")

    # A member cannot read or change encryption specs, and cannot make volumes of the type.
    user, password, proj = cloud.make_member("enc")
    member = cloud.os_env(user, password, proj)
    mtoken = cloud.token(user, password, proj)
    mid = _json(cloud, "project", "show", proj, env=admin)["id"]
    mbase = cloud.url("volume") + f"/v3/{mid}/types/{vt['id']}/encryption"
    assert httpx.get(mbase, headers={"X-Auth-Token": mtoken}).status_code == 403
    assert httpx.delete(f"{mbase}/{eid}", headers={"X-Auth-Token": mtoken}).status_code == 403
    r = cloud.openstack("volume", "create", "--size", "1", "--type", "enc-type", "ev",
                        env=member, check=False)
    assert r.returncode != 0 and "key manager" in r.stderr
    assert not _json(cloud, "volume", "list", env=member)
    # Retype to an encrypted type: 400.
    plain = _json(cloud, "volume", "create", "--size", "1", "plain", env=member)
    r = cloud.openstack("volume", "set", "--type", "enc-type", "plain", env=member,
                        check=False)
    assert r.returncode != 0 and "encryption" in r.stderr, r.stderr
    assert _json(cloud, "volume", "show", plain["id"], env=member)["type"] != "enc-type"

    # Delete: 202, then the type shows no encryption.
    assert httpx.delete(f"{base}/{eid}", headers=h).status_code == 202
    assert httpx.get(base, headers=h).json() == {}
    assert httpx.delete(f"{base}/{eid}", headers=h).status_code == 404
    cloud.openstack("volume", "type", "delete", "enc-type", env=admin)
    assert httpx.get(base, headers=h).status_code == 404
    cloud.openstack("volume", "delete", plain["id"], env=member)
