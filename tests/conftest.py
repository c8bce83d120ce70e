"""Shared test fixtures: a running onestack on free ports, clients, database URLs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningCloud:
    """An ``onestack up`` subprocess and how to reach it."""

    data_dir: Path
    ports: dict[str, int]
    admin_password: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def auth_url(self) -> str:
        return self.url("identity") + "/v3"

    def os_env(self, user: str = "admin", password: str | None = None,
               project: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env.update({
            "OS_AUTH_URL": self.auth_url,
            "OS_IDENTITY_API_VERSION": "3",
            "OS_AUTH_TYPE": "password",
            "OS_USERNAME": user,
            "OS_PASSWORD": password or self.admin_password,
            "OS_PROJECT_NAME": project or user,
            "OS_USER_DOMAIN_ID": "default",
            "OS_PROJECT_DOMAIN_ID": "default",
            "OS_REGION_NAME": "RegionOne",
            "OS_INTERFACE": "public",
        })
        return env

    def openstack(self, *args: str, env: dict[str, str] | None = None,
                  check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run python-openstackclient against this cloud."""
        cmd = [str(VENV_BIN / "openstack"), *args]
        res = subprocess.run(cmd, env=env or self.os_env(), capture_output=True, text=True,
                             timeout=120)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({res.returncode}):\n"
                                 f"{res.stdout}\n{res.stderr}")
        return res

    def token(self, user: str = "admin", password: str | None = None,
              project: str | None = "admin") -> str:
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"},
            "password": password or self.admin_password}}}}}
        if project:
            body["auth"]["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
        r = httpx.post(self.auth_url + "/auth/tokens", json=body)
        assert r.status_code == 201, r.text
        return r.headers["X-Subject-Token"]

    def make_member(self, prefix: str = "member") -> tuple[str, str, str]:
        """A new project with a new user holding ``member`` on it: (user, password, project).

        Tests that need a non-admin use this instead of the bootstrapped ``demo`` user, which
        other tests may delete or change.
        """
        import uuid

        h = {"X-Auth-Token": self.token()}
        suffix = uuid.uuid4().hex[:8]
        user, password, project = f"{prefix}-u-{suffix}", f"pw-{suffix}", f"{prefix}-p-{suffix}"
        base = self.auth_url
        pid = httpx.post(base + "/projects", headers=h,
                         json={"project": {"name": project}}).json()["project"]["id"]
        uid = httpx.post(base + "/users", headers=h,
                         json={"user": {"name": user, "password": password}}).json()["user"]["id"]
        roles = httpx.get(base + "/roles", headers=h, params={"name": "member"}).json()
        rid = roles["roles"][0]["id"]
        r = httpx.put(f"{base}/projects/{pid}/users/{uid}/roles/{rid}", headers=h)
        assert r.status_code == 204, r.text
        return user, password, project

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)


SERVICES = ["identity"]


def _stop_with_parent() -> None:
    """Run in the child between fork and exec: the kernel sends it SIGTERM when the process
    that started it dies, so a test run killed by PID (even with SIGKILL) leaves no cloud
    behind (``onestack up`` stops its guests and agents on SIGTERM)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def start_cloud(data_dir: Path, *, ports: dict[str, int] | None = None,
                env: dict[str, str] | None = None, admin_password: str = "Secret-Admin-1",
                wait: float = 60.0, args: list[str] | None = None,
                prefix: list[str] | None = None) -> RunningCloud:
    """Start ``onestack up``; with free ports chosen here, a port another process took
    between choosing and binding (EADDRINUSE) is retried with new ports. ``prefix`` runs it
    under a wrapper (``ip netns exec NS``: the data-plane tests' namespace, with its own
    ``/sys``)."""
    for attempt in range(3):
        try:
            return _start_cloud(data_dir, ports=ports, env=env, admin_password=admin_password,
                                wait=wait, args=args, prefix=prefix)
        except PortTaken:
            if ports is not None or attempt == 2:
                raise
    raise AssertionError("unreachable")


class PortTaken(RuntimeError):
    """``onestack up`` exited because a port it was given was in use."""


def _start_cloud(data_dir: Path, *, ports: dict[str, int] | None, env: dict[str, str] | None,
                 admin_password: str, wait: float, args: list[str] | None,
                 prefix: list[str] | None = None) -> RunningCloud:
    from onestack.bootstrap import SERVICES as served

    ports = ports or {name: free_port() for name in served}
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    full_env.update({
        "ONESTACK_ADMIN_PASSWORD": admin_password,
        "ONESTACK_BCRYPT_ROUNDS": os.environ.get("ONESTACK_TEST_BCRYPT_ROUNDS", "4"),
        # The fake hypervisor unless a test asks for QEMU (``--compute-driver qemu``).
        "ONESTACK_COMPUTE_DRIVER": "fake",
        "ONESTACK_LOG_LEVEL": "warning",
        # Tests never wire the machine's own network: the Linux data plane only where a
        # test asks for it (inside a namespace it made).
        "ONESTACK_NETWORK_DRIVER": "noop",
    })
    for name, port in ports.items():
        full_env[f"ONESTACK_{name.upper()}_PORT"] = str(port)
    full_env.setdefault("ONESTACK_CONSOLE_PORT", str(free_port()))
    full_env.setdefault("ONESTACK_DASHBOARD_PORT", str(free_port()))
    full_env.update(env or {})
    log_path = data_dir.parent / f"{data_dir.name}.log"
    log = log_path.open("ab")
    proc = subprocess.Popen([*(prefix or []), str(VENV_BIN / "onestack"), "up",
                             "--data-dir", str(data_dir),
                             *(args or [])], env=full_env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=_stop_with_parent)
    cloud = RunningCloud(data_dir, ports, admin_password, proc, log_path, env or {})
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = cloud.log()
            kind = PortTaken if "address already in use" in text else RuntimeError
            raise kind(f"onestack exited ({proc.returncode}):\n{text}")
        try:
            if all(httpx.get(cloud.url(s) + "/healthcheck", timeout=1).status_code == 200
                   for s in ports) and not _guest_image_building(data_dir):
                return cloud
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    cloud.stop(signal.SIGKILL)
    raise RuntimeError(f"onestack did not become healthy:\n{cloud.log()}")


def _guest_image_building(data_dir: Path) -> bool:
    """Whether a QEMU cloud is still building or registering its guest image (the APIs
    answer meanwhile; tests that boot guests wait for the image)."""
    import json

    try:
        return bool(json.loads((data_dir / "guest-image.json").read_text())["state"]
                    == "building")
    except (OSError, ValueError, KeyError):
        return False


@contextlib.contextmanager
def own_cloud(prefix: str, **kwargs: Any) -> Iterator[RunningCloud]:
    """A cloud of one's own in a new temporary directory (``start_cloud``'s options), stopped
    and removed afterwards: what module fixtures yield."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        c = start_cloud(tmp / "data", **kwargs)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a cloud that did not start leaves nothing
        raise
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def cloud() -> Iterator[RunningCloud]:
    """One onestack for the whole session (tests must not depend on each other's data)."""
    with own_cloud("onestack-test-") as c:
        yield c


@pytest.fixture
def admin_token(cloud: RunningCloud) -> str:
    return cloud.token()


def database_urls() -> list[str]:
    """SQLite plus every URL in ONESTACK_TEST_DATABASE_URLS (comma-separated)."""
    urls = ["sqlite"]
    extra = os.environ.get("ONESTACK_TEST_DATABASE_URLS", "")
    urls += [u.strip() for u in extra.split(",") if u.strip()]
    return urls


def scratch_database(url: str, tmp_path: Path) -> Iterator[str]:
    """A scratch database on the server of ``url`` (dropped afterwards); ``sqlite``: a file
    under ``tmp_path``. Skips when the server is unavailable, except in CI."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    if url == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    parsed = make_url(url)
    name = f"onestack_t_{uuid.uuid4().hex[:10]}"
    admin_db = "postgres" if parsed.get_backend_name() == "postgresql" else "mysql"
    server = create_engine(parsed.set(database=admin_db), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # noqa: BLE001
        server.dispose()
        if IN_CI:
            raise
        pytest.skip(f"database server at {parsed.host} unavailable: {exc}")
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as conn:
            if parsed.get_backend_name() == "postgresql":
                conn.execute(text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        server.dispose()


@contextlib.contextmanager
def amqp_vhost(url: str) -> Iterator[str]:
    """``url`` moved to a RabbitMQ virtual host of its own, deleted afterwards with every
    queue and exchange in it, so tests neither see nor leave anything on the shared broker.
    Without ``rabbitmqctl`` (a remote broker) ``url`` is used as it is."""
    from urllib.parse import urlparse, urlunparse

    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        yield url
        return
    user = urlparse(url).username or "guest"
    vhost = f"onestack-test-{uuid.uuid4().hex[:10]}"
    subprocess.run([ctl, "-q", "add_vhost", vhost], check=True, capture_output=True)
    try:
        subprocess.run([ctl, "-q", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
                       check=True, capture_output=True)
        yield urlunparse(urlparse(url)._replace(path="/" + vhost))
    finally:
        subprocess.run([ctl, "-q", "delete_vhost", vhost], capture_output=True)
