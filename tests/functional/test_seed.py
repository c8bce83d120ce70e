"""Seeding and init hooks (issue 16): a seed file in the data dir is applied when the cloud
comes up, again with ``onestack seed`` (nothing changes the second time), hooks run at boot,
ready and shutdown; a malformed seed file is refused before anything changes."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import VENV_BIN, RunningCloud, start_cloud

SEED = """
roles:
  - name: auditor
projects:
  - name: dev
    description: development
users:
  - name: alice
    password: Alice-Secret-1
    email: alice@example.org
    project: dev
    roles:
      - {project: dev, role: member}
      - {project: dev, role: auditor}
flavors:
  - {name: s1.small, vcpus: 1, ram: 512, disk: 1, properties: {"hw:cpu_policy": shared}}
images:
  - {name: tiny-raw, file: disk.raw, disk_format: raw, visibility: public,
     properties: {os_distro: cirros}}
networks:
  - name: dev-net
    project: dev
    subnets:
      - {name: dev-subnet, cidr: 10.50.0.0/24, dns_nameservers: [10.50.0.2]}
routers:
  - {name: dev-router, project: dev, external_gateway: public, interfaces: [dev-subnet]}
security_groups:
  - name: web
    project: dev
    rules:
      - {protocol: tcp, port: 80}
      - {protocol: icmp}
keypairs:
  - {name: alice-key, user: alice, public_key: "%s"}
quotas:
  - project: dev
    compute: {instances: 20, cores: 40}
    network: {port: 200}
    volume: {gigabytes: 500}
"""
KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBn0f7bgZ6lP1vG7jX0bEItM8QHt0H2w8b4Ih5L9vYc3 "
       "alice@lab")


def _hook(data: Path, stage: str, name: str, text: str) -> None:
    folder = data / "init" / f"{stage}.d"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def _cli(cloud: RunningCloud, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "onestack"), *args, "--data-dir",
                           str(cloud.data_dir)], capture_output=True, text=True, timeout=120)


def _state(cloud: RunningCloud, token: str) -> dict[str, Any]:
    h = {"X-Auth-Token": token}

    def get(service: str, path: str) -> Any:
        r = httpx.get(cloud.url(service) + path, headers=h)
        assert r.status_code == 200, r.text
        return r.json()

    return {
        "networks": sorted((n["name"], n["updated_at"]) for n in get(
            "network", "/v2.0/networks")["networks"]),
        "groups": sorted((g["name"], len(g["security_group_rules"])) for g in get(
            "network", "/v2.0/security-groups")["security_groups"]),
        "keypairs": [k["keypair"]["name"] for k in get("compute", "/v2.1/os-keypairs")[
            "keypairs"]],
        "images": sorted((i["name"], i["updated_at"]) for i in get("image", "/v2/images")[
            "images"]),
        "quota": get("compute", "/v2.1/os-quota-sets/" + _project(cloud, token))[
            "quota_set"]["instances"],
    }


def _project(cloud: RunningCloud, token: str) -> str:
    r = httpx.get(cloud.url("identity") + "/v3/auth/tokens",
                  headers={"X-Auth-Token": token, "X-Subject-Token": token})
    return str(r.json()["token"]["project"]["id"])


def test_seed_on_start_again_by_hand_and_hooks() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="onestack-seed-"))
    data = tmp / "data"
    data.mkdir(mode=0o700)
    (data / "seed.yaml").write_text(SEED % KEY)
    (data / "disk.raw").write_bytes(b"\0" * 65536)
    _hook(data, "boot", "10-boot.sh", 'echo "$ONESTACK_HOOK_STAGE" >> "$ONESTACK_DATA_DIR/hooks"\n')
    _hook(data, "ready", "10-ready.sh",
          'echo "ready $OS_USERNAME $OS_PROJECT_NAME" >> "$ONESTACK_DATA_DIR/hooks"\n')
    _hook(data, "ready", "20-fails.sh", "exit 3\n")
    _hook(data, "ready", "30-after.py",
          "import os\nopen(os.environ['ONESTACK_DATA_DIR'] + '/hooks', 'a').write('py\\n')\n")
    _hook(data, "shutdown", "10-bye.sh", 'echo bye >> "$ONESTACK_DATA_DIR/hooks"\n')
    _hook(data, "ready", "README", "not a script: skipped\n")
    cloud = start_cloud(data)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "py" not in (
                (data / "hooks").read_text() if (data / "hooks").exists() else ""):
            time.sleep(0.1)
        assert (data / "hooks").read_text().split("\n")[:3] == [
            "boot", "ready admin admin", "py"]
        assert "seeded from" in cloud.log()

        alice = cloud.token("alice", "Alice-Secret-1", "dev")
        first = _state(cloud, alice)
        assert ("dev-net", first["networks"][0][1]) in first["networks"]
        assert ("web", 2 + 2) in first["groups"]  # two egress defaults plus two rules
        assert first["keypairs"] == ["alice-key"]
        assert "tiny-raw" in [name for name, _ in first["images"]]
        assert first["quota"] == 20

        res = _cli(cloud, "seed", str(data / "seed.yaml"))
        assert res.returncode == 0, res.stderr
        assert "0 created, 0 updated" in res.stdout
        assert _state(cloud, alice) == first

        bad = tmp / "bad.yaml"
        bad.write_text("projects:\n  - name: x\n    colour: blue\n")
        res = _cli(cloud, "seed", str(bad))
        assert res.returncode != 0 and "projects/0" in res.stderr
        bad.write_text("projects: [ {name: ok-one} ]\nusers: [ {name: u, project: nope} ]\n")
        res = _cli(cloud, "seed", str(bad))
        assert res.returncode != 0 and "no project 'nope'" in res.stderr
        bad.write_text(": not yaml : [")
        assert _cli(cloud, "seed", str(bad)).returncode != 0
        assert "valid" in _cli(cloud, "seed", "--check", str(data / "seed.yaml")).stdout
    finally:
        cloud.stop()
    assert (data / "hooks").read_text().splitlines()[-1] == "bye"
    assert "20-fails.sh exited 3" in cloud.log()
    shutil.rmtree(tmp, ignore_errors=True)
