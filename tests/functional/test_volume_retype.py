"""Volume retype (``os-retype``) through ``openstack volume set --type``: the new type
decides whether the volume is multiattach (Cinder's ``multiattach="<is> True"`` extra spec),
both ways; a retype that would change that is refused for a volume that is not available,
and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import RunningCloud

pytestmark = pytest.mark.slow


def _json(cloud: RunningCloud, *args: str, env: dict[str, str] | None = None) -> Any:
    return json.loads(cloud.openstack(*args, "-f", "json", env=env).stdout)


def test_retype_follows_the_types_multiattach(cloud: RunningCloud) -> None:
    admin = cloud.os_env()
    cloud.openstack("volume", "type", "create", "--property", "multiattach=<is> True",
                    "rt-shared", env=admin)
    cloud.openstack("volume", "type", "create", "rt-plain", env=admin)
    cloud.openstack("volume", "type", "create", "rt-plain2", env=admin)
    vol = _json(cloud, "volume", "create", "--size", "1", "--type", "rt-plain", "rt-vol",
                env=admin)
    assert vol["multiattach"] is False

    def show() -> dict[str, Any]:
        return dict(_json(cloud, "volume", "show", vol["id"], env=admin))

    cloud.openstack("volume", "set", "--type", "rt-shared", vol["id"], env=admin)
    shown = show()
    assert (shown["type"], shown["multiattach"]) == ("rt-shared", True)
    cloud.openstack("volume", "set", "--type", "rt-plain", vol["id"], env=admin)
    shown = show()
    assert (shown["type"], shown["multiattach"]) == ("rt-plain", False)

    # Not available: a retype that keeps multiattach as it is goes through; one that
    # would change it is refused and stores nothing.
    cloud.openstack("volume", "set", "--state", "in-use", vol["id"], env=admin)
    cloud.openstack("volume", "set", "--type", "rt-plain2", vol["id"], env=admin)
    assert show()["type"] == "rt-plain2"
    r = cloud.openstack("volume", "set", "--type", "rt-shared", vol["id"], env=admin,
                        check=False)
    assert r.returncode != 0 and "available" in r.stderr, r.stderr
    shown = show()
    assert (shown["type"], shown["multiattach"], shown["status"]) == (
        "rt-plain2", False, "in-use")
