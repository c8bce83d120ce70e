"""First-start bootstrap (like ``keystone-manage bootstrap`` plus DevStack's demo set-up) and
the credential files written for users: ``clouds.yaml``, ``admin-openrc.sh``,
``demo-openrc.sh``. Idempotent: later starts only fill in what is missing and keep the
catalog's onestack-managed URLs in line with the configured host and ports.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from onestack.config import Settings
from onestack.identity import passwords
from onestack.identity.manager import IdentityManager
from onestack.identity.records import Grant

#: (catalog type, service name, description, URL path) of each onestack API; the volume
#: API is registered twice, as DevStack does: ``block-storage`` (the official type) and
#: ``volumev3`` (the type older clients and Tempest's default look for).
CATALOG: dict[str, list[tuple[str, str, str, str]]] = {
    "identity": [("identity", "keystone", "OpenStack Identity", "/v3")],
    "image": [("image", "glance", "OpenStack Image service", "")],
    "compute": [("compute", "nova", "OpenStack Compute", "/v2.1")],
    "placement": [("placement", "placement", "OpenStack Placement", "")],
    "network": [("network", "neutron", "OpenStack Networking", "")],
    "volume": [("block-storage", "cinder", "OpenStack Block Storage", "/v3/$(project_id)s"),
               ("volumev3", "cinderv3", "OpenStack Block Storage (v3 alias)",
                "/v3/$(project_id)s")],
}
MANAGED = "onestack"


@dataclass
class Credentials:
    admin_password: str
    demo_password: str


def _secret_file(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def read_openrc(path: Path) -> dict[str, str]:
    """The ``export NAME=value`` lines of an rc file :func:`openrc_text` wrote (values
    unquoted as a shell would); empty when there is no such file."""
    import shlex

    env: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return env
    for line in text.splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export "):].partition("=")
            try:
                parts = shlex.split(value)
            except ValueError:
                continue
            env[name.strip()] = parts[0] if parts else ""
    return env


def read_password(path: Path, var: str = "OS_PASSWORD") -> str | None:
    return read_openrc(path).get(var)


def bootstrap(m: IdentityManager, settings: Settings, services: list[str]) -> Credentials:
    """Create the default domain, projects, roles, users, region and catalog (idempotent)."""
    m.ensure_generation_row()
    data = settings.data_dir
    admin_pw = (settings.admin_password or read_password(data / "admin-openrc.sh")
                or secrets.token_urlsafe(16))
    demo_pw = (settings.demo_password or read_password(data / "demo-openrc.sh")
               or secrets.token_urlsafe(16))

    first = m.domain_info("default") is None
    if first:
        m.create_domain("Default", "The default domain", True, domain_id="default")
    roles = {}
    for name in ("admin", "manager", "member", "reader", "service"):
        roles[name] = m.find_role(name) or m.create_role(name)
    implied = {p.id: [r.id for r in imp] for p, imp in m.list_implied_roles()}
    # Keystone's bootstrap: admin implies manager implies member implies reader.
    for prior, imp in (("admin", "manager"), ("manager", "member"), ("member", "reader")):
        if roles[imp].id not in implied.get(roles[prior].id, []):
            m.create_implied_role(roles[prior].id, roles[imp].id)
    projects = {}
    wanted = [("admin", "Bootstrap project for initializing the cloud.")]
    if first:
        # The demo user and project of DevStack's set-up, only on the very first start, so
        # that deleting them stays deleted.
        wanted += [("demo", "Demo Project"), ("service", "Service Project")]
    for name, desc in wanted:
        info = m.project_info_by_name(name, "default")
        projects[name] = info.id if info else m.create_project(name, "default", desc).id

    def ensure_user(name: str, password: str, project: str, configured: bool) -> str:
        u = m.find_user(name, "default")
        marker = data / f".{name}-password-applied"
        # A keyed fingerprint of the configured password that was last applied: a restart
        # with the same setting skips a bcrypt check (half a second) and leaves a password
        # changed through the API alone; a new setting is applied, as keystone-manage
        # bootstrap does.
        fingerprint = hmac.new(m.credential_codec.repo.all_keys()[0], password.encode(),
                               hashlib.sha256).hexdigest()
        if u is None:
            u = m.create_user(name, "default", password, default_project_id=projects[project])
        elif configured and (not marker.exists() or marker.read_text() != fingerprint) and \
                not passwords.check_password(password, u.password_hash):
            m.update_user(u.id, {"password": password})
        if configured:
            _secret_file(marker, fingerprint)
        return u.id

    admin_id = ensure_user("admin", admin_pw, "admin", bool(settings.admin_password))
    m.create_grant(roles["admin"].id, Grant(user_id=admin_id, project_id=projects["admin"]))
    m.create_grant(roles["admin"].id, Grant(user_id=admin_id, system="all"))
    if first:
        demo_id = ensure_user("demo", demo_pw, "demo", bool(settings.demo_password))
        m.create_grant(roles["admin"].id, Grant(user_id=admin_id, project_id=projects["demo"]))
        m.create_grant(roles["member"].id, Grant(user_id=demo_id, project_id=projects["demo"]))

    region = settings.region
    if region not in {r.id for r in m.list_regions()}:
        m.create_region(region, "")
    ensure_catalog(m, settings, services)
    write_client_files(settings, Credentials(admin_pw, demo_pw))
    return Credentials(admin_pw, demo_pw)


def ensure_catalog(m: IdentityManager, settings: Settings, services: list[str]) -> None:
    """Register every running onestack service; follow host/port changes of managed entries."""
    existing = m.list_services()
    endpoints = m.list_endpoints()
    for svc_name in services:
        for stype, name, desc, path in CATALOG.get(svc_name, []):
            url = settings.url(svc_name) + path
            svc = next((s for s in existing if s.type == stype
                        and (s.extra or {}).get("name") == name), None)
            if svc is None:
                svc = m.create_service(stype, name, desc, extra={"managed_by": MANAGED})
            for interface in ("public", "internal", "admin"):
                ep = next((e for e in endpoints if e.service_id == svc.id and
                           e.interface == interface and e.region_id == settings.region), None)
                if ep is None:
                    m.create_endpoint(svc.id, interface, url, settings.region,
                                      extra={"managed_by": MANAGED})
                elif (ep.extra or {}).get("managed_by") == MANAGED and ep.url != url:
                    m.update_endpoint(ep.id, {"url": url})


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def openrc_text(settings: Settings, user: str, password: str) -> str:
    auth_url = settings.url("identity") + "/v3"
    lines = [
        f"# onestack credentials for {user}; source this file to use the openstack client",
        f"export OS_AUTH_URL={auth_url}",
        "export OS_IDENTITY_API_VERSION=3",
        "export OS_AUTH_TYPE=password",
        f"export OS_USERNAME={user}",
        f"export OS_PASSWORD={_quote(password)}",
        f"export OS_PROJECT_NAME={user}",
        "export OS_USER_DOMAIN_ID=default",
        "export OS_PROJECT_DOMAIN_ID=default",
        f"export OS_REGION_NAME={settings.region}",
        "export OS_INTERFACE=public",
    ]
    return "\n".join(lines) + "\n"


def write_client_files(settings: Settings, creds: Credentials) -> None:
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    _secret_file(data / "admin-openrc.sh", openrc_text(settings, "admin", creds.admin_password))
    _secret_file(data / "demo-openrc.sh", openrc_text(settings, "demo", creds.demo_password))
    auth_url = settings.url("identity") + "/v3"

    def cloud(user: str, password: str) -> dict[str, object]:
        return {
            "auth": {"auth_url": auth_url, "username": user, "password": password,
                     "project_name": user, "user_domain_id": "default",
                     "project_domain_id": "default"},
            "region_name": settings.region,
            "identity_api_version": 3,
            "interface": "public",
        }

    doc = {"clouds": {"onestack-admin": cloud("admin", creds.admin_password),
                      "onestack-demo": cloud("demo", creds.demo_password)}}
    _secret_file(data / "clouds.yaml", yaml.safe_dump(doc, sort_keys=False))
