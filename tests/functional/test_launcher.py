"""`onestack up | status | openrc | down` lifecycle, restarts and kill -9."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import httpx
import yaml

from tests.conftest import VENV_BIN, free_port, start_cloud


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "onestack"), *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_lifecycle_restart_and_kill9() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="onestack-life-"))
    data = tmp / "data"
    from onestack.bootstrap import SERVICES

    ports = {name: free_port() for name in SERVICES}
    console = {"ONESTACK_CONSOLE_PORT": str(free_port())}
    c = None
    try:
        c = start_cloud(data, ports=ports, env=console)
        for f in ("clouds.yaml", "admin-openrc.sh", "demo-openrc.sh"):
            assert (data / f).exists()
            assert (data / f).stat().st_mode & 0o077 == 0  # secrets are private
        clouds = yaml.safe_load((data / "clouds.yaml").read_text())["clouds"]
        assert set(clouds) == {"onestack-admin", "onestack-demo"}
        assert clouds["onestack-admin"]["auth"]["password"] == c.admin_password
        # A fresh shell: none of the port variables the cloud was started with.
        env = {"PATH": "/usr/bin:/bin"}
        if os.environ.get("PYTHONPATH"):  # the tree under test, when not the venv's own
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        st = _cli("status", "--data-dir", str(data), env=env)
        assert st.returncode == 0, st.stdout + st.stderr
        for name in SERVICES:
            assert f"  {name:<10} up    http://127.0.0.1:{ports[name]}" in st.stdout, st.stdout
        assert f"console    up    http://127.0.0.1:{console['ONESTACK_CONSOLE_PORT']}" in st.stdout
        assert "nova-compute on " in st.stdout and "servers: 0" in st.stdout, st.stdout
        doc = json.loads(_cli("status", "--json", "--data-dir", str(data), env=env).stdout)
        assert doc["running"] and doc["pid"] > 0 and doc["compute_driver"]
        assert {n: s["up"] for n, s in doc["services"].items()} == {
            n: True for n in [*SERVICES, "console"]} | {
            n: True for n in doc["services"] if n not in (*SERVICES, "console")}
        assert {s["state"] for s in doc["compute_services"]} == {"up"}
        assert "nova-compute" in {s["binary"] for s in doc["compute_services"]}
        rc = _cli("openrc", "demo", "--data-dir", str(data), env=env)
        assert "OS_USERNAME=demo" in rc.stdout

        # Something committed survives kill -9.
        tok = c.token()
        h = {"X-Auth-Token": tok}
        r = httpx.post(c.auth_url + "/projects", headers=h,
                       json={"project": {"name": "survivor"}})
        assert r.status_code == 201
        c.stop(signal.SIGKILL)
        # Its run file outlives it: status sees the process is gone.
        st = _cli("status", "--data-dir", str(data), env=env)
        assert st.returncode != 0 and "not running" in st.stdout and "is gone" in st.stdout
        c = start_cloud(data, ports=ports, env=console)
        r = httpx.get(c.auth_url + "/projects", headers={"X-Auth-Token": c.token()},
                      params={"name": "survivor"})
        assert len(r.json()["projects"]) == 1
        # Tokens issued before the restart are still valid (keys are on disk).
        assert httpx.get(c.auth_url + "/auth/tokens",
                         headers={"X-Auth-Token": tok, "X-Subject-Token": tok}).status_code == 200
        # Clean shutdown on SIGTERM; status then reports the service down.
        assert c.stop(signal.SIGTERM) == 0
        assert "onestack stopped" in c.log()
        st = _cli("status", "--data-dir", str(data), env=env)
        assert st.returncode != 0 and "not running" in st.stdout
        assert not (data / "run.json").exists()
    finally:
        if c is not None:
            c.stop()  # a failed assertion must not leave a cloud running
        shutil.rmtree(tmp, ignore_errors=True)


def test_port_in_use_is_a_clear_error() -> None:
    import socket

    from onestack.bootstrap import SERVICES

    tmp = Path(tempfile.mkdtemp(prefix="onestack-port-"))
    env = {f"ONESTACK_{n.upper()}_PORT": str(free_port()) for n in SERVICES}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = subprocess.run(
            [str(VENV_BIN / "onestack"), "up", "--data-dir", str(tmp / "d")],
            capture_output=True, text=True, timeout=60,
            env={**env, "ONESTACK_IDENTITY_PORT": str(port), "PATH": "/usr/bin:/bin",
                 "ONESTACK_BCRYPT_ROUNDS": "4",
                 # Never the host's own network, nor a guest image build, from a test.
                 "ONESTACK_COMPUTE_DRIVER": "fake", "ONESTACK_NETWORK_DRIVER": "noop"})
    shutil.rmtree(tmp, ignore_errors=True)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr


_PARENT = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tests.conftest import start_cloud
c = start_cloud(Path(sys.argv[1]))
print(c.proc.pid, flush=True)
sys.stdin.read()
"""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_test_run_leaves_no_cloud() -> None:
    """A test process killed with SIGKILL (no finally block runs) takes its cloud with it."""
    import sys
    import time

    tmp = Path(tempfile.mkdtemp(prefix="onestack-orphan-"))
    repo = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(tmp / "data"), str(repo)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pid = 0
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert _running(pid)
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 30
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _running(pid), "the cloud outlived the test process that started it"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if pid and _running(pid):
            os.killpg(pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)
