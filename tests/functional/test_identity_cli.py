"""The identity commands our users typed (seed 003, "Keystone"), verbatim, with the real
python-openstackclient, plus the keystoneauth1 snippet of seed 001."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningCloud, start_cloud


@pytest.fixture(scope="module")
def own_cloud() -> Iterator[RunningCloud]:
    """A cloud of this module's own: the seed commands delete and recreate ``demo``, which
    the shared cloud's other tests rely on."""
    tmp = Path(tempfile.mkdtemp(prefix="onestack-seed-"))
    c = start_cloud(tmp / "data")
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_seed_keystone_commands(own_cloud: RunningCloud) -> None:
    cloud = own_cloud
    osc = cloud.openstack
    # onestack's first start already did the seed's set-up; remove the demo user and project
    # so that the seed's own commands run exactly as typed.
    osc("user", "delete", "demo")
    osc("project", "delete", "demo")

    osc("project", "create", "--domain", "default", "--description", "Demo Project", "demo")
    osc("user", "create", "--domain", "default", "--password=demo", "demo")
    osc("role", "create", "user")
    osc("role", "add", "--project", "demo", "--user", "demo", "user")
    users = osc("user", "list", "-f", "value", "-c", "Name").stdout.split()
    assert {"admin", "demo"} <= set(users)
    roles = osc("role", "list", "-f", "value", "-c", "Name").stdout.split()
    assert {"admin", "member", "reader", "user"} <= set(roles)
    projects = osc("project", "list", "-f", "value", "-c", "Name").stdout.split()
    assert {"admin", "demo", "service"} <= set(projects)

    svc = osc("service", "create", "--name", "glance", "--description",
              "OpenStack Image service", "image", "-f", "value", "-c", "id").stdout.strip()
    ep = osc("endpoint", "create", "--region", "RegionOne", svc, "public",
             "http://127.0.0.1:9292", "-f", "value", "-c", "id").stdout.strip()
    listed = osc("endpoint", "list", "-f", "value", "-c", "ID").stdout.split()
    assert ep in listed
    osc("endpoint", "delete", ep)
    assert ep not in osc("endpoint", "list", "-f", "value", "-c", "ID").stdout.split()
    osc("service", "delete", svc)  # leave the catalog as it was for other tests

    tok = json.loads(osc("token", "issue", "-f", "json").stdout)
    assert tok["id"] and tok["project_id"] and tok["user_id"]

    env = {k: v for k, v in cloud.os_env().items() if not k.startswith("OS_")}
    env["OS_PASSWORD"] = cloud.admin_password
    res = cloud.openstack(
        "--os-auth-url", cloud.auth_url, "--os-project-domain-id", "default",
        "--os-user-domain-id", "default", "--os-project-name", "admin",
        "--os-username", "admin", "--os-auth-type", "password", "token", "issue",
        "-f", "json", env=env)
    assert json.loads(res.stdout)["id"]

    # The demo user created by the seed commands can log in with its role.
    demo = json.loads(osc("token", "issue", "-f", "json",
                          env=cloud.os_env("demo", "demo", "demo")).stdout)
    assert demo["project_id"]


def test_keystoneauth_snippet_and_novaclient_session(cloud: RunningCloud) -> None:
    from keystoneauth1 import session
    from keystoneauth1.identity import v3

    auth = v3.Password(auth_url=cloud.auth_url, username="admin",
                       password=cloud.admin_password, project_name="admin",
                       user_domain_id="default", project_domain_id="default")
    sess = session.Session(auth=auth)
    token = sess.get_token()
    assert token
    assert sess.get_project_id()


def test_application_credential_and_token_revoke(cloud: RunningCloud) -> None:
    osc = cloud.openstack
    name = "ci-appcred"
    created = json.loads(osc("application", "credential", "create", name, "-f", "json").stdout)
    secret = created["Secret"] if "Secret" in created else created["secret"]
    cred_id = created["ID"] if "ID" in created else created["id"]
    env = {k: v for k, v in cloud.os_env().items() if not k.startswith("OS_")}
    env.update({
        "OS_AUTH_URL": cloud.auth_url, "OS_AUTH_TYPE": "v3applicationcredential",
        "OS_APPLICATION_CREDENTIAL_ID": cred_id, "OS_APPLICATION_CREDENTIAL_SECRET": secret,
        "OS_IDENTITY_API_VERSION": "3",
    })
    tok = json.loads(osc("token", "issue", "-f", "json", env=env).stdout)
    assert tok["id"]
    # The token works, then `openstack token revoke` kills it.
    url = cloud.auth_url + "/auth/tokens"
    admin = cloud.token()
    assert httpx.get(url, headers={"X-Auth-Token": admin,
                                   "X-Subject-Token": tok["id"]}).status_code == 200
    osc("token", "revoke", tok["id"])
    r = httpx.get(url, headers={"X-Auth-Token": admin, "X-Subject-Token": tok["id"]})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == 404
    osc("application", "credential", "delete", name)
