"""Issue 16: a fresh cloud has a default image in every mode, found by name as DevStack's
CirrOS is (``cirros-*``); with the fake driver it is a placeholder disk that boots fake
servers."""

from __future__ import annotations

import json

from tests.conftest import RunningCloud, own_cloud


def test_fake_cloud_has_a_cirros_style_default_image() -> None:
    with own_cloud("onestack-default-image-") as cloud:
        _check(cloud)


def _check(cloud: RunningCloud) -> None:
    images = json.loads(cloud.openstack("image", "list", "-f", "json").stdout)
    names = [i["Name"] for i in images]
    assert "cirros-onestack-x86_64-disk" in names
    shown = json.loads(cloud.openstack("image", "show", "cirros-onestack-x86_64-disk",
                                       "-f", "json").stdout)
    assert shown["visibility"] == "public" and shown["status"] == "active"
    assert shown["properties"]["onestack_placeholder"] == "true"
    from onestack.identity.setup import read_password

    demo = read_password(cloud.data_dir / "demo-openrc.sh")
    assert demo is not None
    env = cloud.os_env("demo", demo, "demo")  # the private network is demo's (DevStack)
    server = json.loads(cloud.openstack(
        "server", "create", "--image", "cirros-onestack-x86_64-disk", "--flavor", "m1.tiny",
        "--network", "private", "--wait", "dflt-vm", "-f", "json", env=env).stdout)
    assert server["status"] == "ACTIVE"
    cloud.openstack("server", "delete", "--wait", "dflt-vm", env=env)
