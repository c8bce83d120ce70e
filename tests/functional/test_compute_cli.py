"""The seed flow (seeds 001/003) with the real clients: nova, openstack, novaclient.

One ``onestack up`` (fake hypervisor) for the module; the test uploads a tiny image named
``cirros`` through the image API first, as a user would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests import image_samples
from tests.conftest import VENV_BIN, RunningCloud, start_cloud

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def compute_cloud() -> Iterator[RunningCloud]:
    tmp = Path(tempfile.mkdtemp(prefix="onestack-compute-cli-"))
    c = start_cloud(tmp / "data")
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def nova(cloud: RunningCloud, *args: str) -> str:
    res = subprocess.run([str(VENV_BIN / "nova"), *args], env=cloud.os_env(),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"nova {' '.join(args)}:\n{res.stdout}\n{res.stderr}"
    return res.stdout


def osc_json(cloud: RunningCloud, *args: str) -> object:
    return json.loads(cloud.openstack(*args, "-f", "json").stdout)


def wait_status(cloud: RunningCloud, name: str, status: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        server = osc_json(cloud, "server", "show", name)
        assert isinstance(server, dict)
        if server["status"] == status and not server.get("OS-EXT-STS:task_state"):
            return server
        assert time.monotonic() < deadline, f"{name} is {server['status']}, not {status}"
        time.sleep(0.2)


def test_seed_flow(compute_cloud: RunningCloud, tmp_path: Path) -> None:
    cloud = compute_cloud
    image = tmp_path / "cirros.img"
    image.write_bytes(image_samples.qcow2(length=65536))
    cloud.openstack("image", "create", "cirros", "--file", str(image), "--disk-format",
                    "qcow2", "--container-format", "bare", "--public")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = tmp_path / "id_rsa.pub"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                  serialization.PublicFormat.OpenSSH))

    # nova keypair-add --pub-key ~/.ssh/id_rsa.pub mykey; nova keypair-list; nova flavor-list
    nova(cloud, "keypair-add", "--pub-key", str(pub), "mykey")
    assert "mykey" in nova(cloud, "keypair-list")
    flavors = nova(cloud, "flavor-list")
    for name in ("m1.tiny", "m1.small", "m1.medium", "m1.large", "m1.xlarge", "m1.nano",
                 "m1.micro"):
        assert name in flavors
    services = nova(cloud, "service-list")
    assert "nova-compute" in services and "nova-scheduler" in services and " up " in services
    nova(cloud, "list")

    # ``--nic none``: OSC 10.x reads ``--network none`` as a network *named* "none" and looks
    # it up in the network service before calling compute (see docs/compute.md).
    cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "cirros",
                    "--key-name", "mykey", "--nic", "none", "vm1", "--wait")
    listing = osc_json(cloud, "server", "list")
    assert isinstance(listing, list)
    assert [s["Status"] for s in listing if s["Name"] == "vm1"] == ["ACTIVE"]
    shown = osc_json(cloud, "server", "show", "vm1")
    assert isinstance(shown, dict)
    assert shown["status"] == "ACTIVE" and shown["key_name"] == "mykey"
    assert shown["OS-EXT-STS:power_state"] in (1, "Running")

    cloud.openstack("server", "reboot", "vm1")
    wait_status(cloud, "vm1", "ACTIVE")
    cloud.openstack("server", "stop", "vm1")
    wait_status(cloud, "vm1", "SHUTOFF")
    cloud.openstack("server", "start", "vm1")
    wait_status(cloud, "vm1", "ACTIVE")
    cloud.openstack("server", "image", "create", "vm1", "--name", "snap", "--wait")
    snap = osc_json(cloud, "image", "show", "snap")
    assert isinstance(snap, dict) and snap["status"] == "active"

    svc = osc_json(cloud, "compute", "service", "list")
    assert isinstance(svc, list) and any(s["Binary"] == "nova-compute" and s["State"] == "up"
                                         for s in svc)
    hyp = osc_json(cloud, "hypervisor", "list")
    assert isinstance(hyp, list) and hyp and hyp[0]["State"] == "up"
    cloud.openstack("quota", "show")
    limits = osc_json(cloud, "limits", "show", "--absolute")
    assert isinstance(limits, list)
    values = {row["Name"]: row["Value"] for row in limits}
    assert values.get("max_total_instances", values.get("maxTotalInstances")) == 10
    assert values.get("total_instances_used", values.get("totalInstancesUsed")) == 1

    cloud.openstack("server", "delete", "vm1", "--wait")
    listing = osc_json(cloud, "server", "list")
    assert isinstance(listing, list) and not [s for s in listing if s["Name"] == "vm1"]


def test_novaclient_flavors(compute_cloud: RunningCloud) -> None:
    """Seed 001: ``novaclient.client.Client("2.1", session=sess).flavors.list()``."""
    from keystoneauth1 import loading, session
    from novaclient import client

    loader = loading.get_plugin_loader("password")
    auth = loader.load_from_options(
        auth_url=compute_cloud.auth_url, username="admin",
        password=compute_cloud.admin_password, project_name="admin",
        user_domain_id="default", project_domain_id="default")
    sess = session.Session(auth=auth)
    flavors = client.Client("2.1", session=sess).flavors.list()
    assert "m1.tiny" in [f.name for f in flavors]


def test_demo_user_cannot_see_admin_servers(compute_cloud: RunningCloud,
                                            tmp_path: Path) -> None:
    cloud = compute_cloud
    demo_pw = None
    for line in (cloud.data_dir / "demo-openrc.sh").read_text().splitlines():
        if line.startswith("export OS_PASSWORD="):
            demo_pw = line.split("=", 1)[1].strip("'")
    assert demo_pw
    cloud.openstack("server", "create", "--flavor", "m1.nano", "--image", "cirros", "--nic",
                    "none", "private-vm", "--wait")
    demo_env = cloud.os_env("demo", demo_pw, "demo")
    res = cloud.openstack("server", "show", "private-vm", env=demo_env, check=False)
    assert res.returncode != 0
    res = cloud.openstack("hypervisor", "list", env=demo_env, check=False)
    assert res.returncode != 0 and "403" in res.stderr
    cloud.openstack("server", "delete", "private-vm", "--wait")
