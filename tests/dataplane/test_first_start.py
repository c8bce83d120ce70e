"""Issue 16 "Done when" 1: a fresh cloud with the default drivers (``auto``: QEMU and the
Linux data plane here) answers while the guest image builds in the background, shows the
build's progress (its output and ``onestack status``), registers the default image, and
README's first command boots a real guest on the private network."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.conftest import VENV_BIN, free_port, start_cloud
from tests.dataplane.lab import (  # noqa: F401 - pytestmark applies here
    _cloud_namespaces,
    _cloud_pids,
    _remove_namespaces,
    _wait,
    pytestmark,
)
from tests.netns import in_netns, namespace


def _status(data: Path) -> dict[str, object]:
    res = subprocess.run([str(VENV_BIN / "onestack"), "status", "--json", "--data-dir",
                          str(data)], capture_output=True, text=True, timeout=60)
    return dict(json.loads(res.stdout))


def test_first_start_builds_the_guest_in_the_background() -> None:
    from onestack.guestimage import build_guest_image, default_cache_dir

    build_guest_image()  # the Debian packages, fetched before entering the namespace
    tmp = Path(tempfile.mkdtemp(prefix="onestack-first-"))
    data = tmp / "data"
    cache = tmp / "cache"
    cache.mkdir()
    shutil.copytree(default_cache_dir() / "debs", cache / "debs", copy_function=os.link)
    ids: dict[str, list[str]] = {}
    cloud = None
    with namespace("osfirst") as ns, in_netns(ns):
        try:
            cloud = start_cloud(data, env={
                "ONESTACK_COMPUTE_DRIVER": "auto", "ONESTACK_NETWORK_DRIVER": "auto",
                "ONESTACK_GUEST_IMAGE_DIR": str(cache), "ONESTACK_LOG_LEVEL": "info",
                "ONESTACK_METADATA_PORT": str(free_port())}, wait=120)
            admin = cloud.os_env()
            first = _status(data)
            assert first["compute_driver"] == "qemu" and first["network_driver"] == "linux"
            guest = first["guest_image"]
            assert isinstance(guest, dict) and guest["state"] in ("building", "ready")
            if guest["state"] == "building":  # the APIs answer meanwhile
                names = [i["Name"] for i in json.loads(cloud.openstack(
                    "image", "list", "-f", "json", env=admin).stdout)]
                assert "onestack-guest" not in names

            def ready() -> bool:
                state = _status(data).get("guest_image", {})
                assert isinstance(state, dict) and state["state"] != "failed", state
                return state["state"] == "ready"

            _wait(ready, "the guest image", 300)
            log = cloud.log()
            assert "guest image: building the initramfs" in log
            assert "guest image ready" in log

            from onestack.identity.setup import read_password

            demo = cloud.os_env("demo", read_password(data / "demo-openrc.sh"), "demo")
            server = json.loads(cloud.openstack(
                "server", "create", "--image", "cirros-onestack-x86_64-disk", "--flavor",
                "m1.tiny", "--network", "private", "--wait", "vm1", "-f", "json",
                env=demo).stdout)
            assert server["status"] == "ACTIVE"
            _wait(lambda: "root disk mounted" in cloud.openstack(
                "console", "log", "show", "vm1", env=demo).stdout, "the guest to boot", 240)
        finally:
            if cloud is not None:
                with contextlib.suppress(Exception):
                    for kind in ("network", "router"):
                        ids[kind + "s"] = cloud.openstack(
                            kind, "list", "-f", "value", "-c", "ID").stdout.split()
                cloud.stop()
            for pid in _cloud_pids(data):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _remove_namespaces(_cloud_namespaces(ids))
            time.sleep(0.2)
    shutil.rmtree(tmp, ignore_errors=True)
