"""Applying a seed document through the cloud's public APIs, as an admin would by hand.

Every resource is found by name (in its project or domain) first: what exists is left alone
or brought in line where OpenStack allows it (project and user descriptions, quotas,
missing role assignments, router interfaces and security group rules); what is missing is
created. Nothing is ever deleted, so applying the same file twice changes nothing the
second time. A user's password and an image's data are set when they are created only.
Order: roles, projects, users (and their role assignments), flavors, images, networks and
subnets, routers, security groups, key pairs, quotas.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from onestack.seed.schema import SeedError

LOG = logging.getLogger(__name__)


@dataclass
class SeedReport:
    """What applying a seed did, one ``kind name`` per entry."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{len(self.created)} created, {len(self.updated)} updated, "
                f"{len(self.unchanged)} unchanged")


class Seeder:
    """Applies seed documents to the cloud behind ``urls`` (service name -> base URL) with
    an admin ``token`` (scoped to the admin project). Relative file paths in the document are
    taken from ``base_dir``."""

    def __init__(self, client: httpx.Client, urls: dict[str, str], token: str,
                 base_dir: Path, progress: Callable[[str], None] | None = None) -> None:
        self.c = client
        self.urls = urls
        self.h = {"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.79"}
        self.base_dir = base_dir
        self.progress = progress or (lambda _line: None)
        self.report = SeedReport()
        self._projects: dict[tuple[str, str], str] = {}
        self._domains: dict[str, str] = {}

    # ------------------------------------------------------------------ HTTP
    def _req(self, method: str, service: str, path: str, want: tuple[int, ...] = (200,),
             **kw: Any) -> Any:
        headers = {**self.h, **kw.pop("headers", {})}
        r = self.c.request(method, self.urls[service] + path, headers=headers, **kw)
        if r.status_code not in want:
            raise SeedError(f"{method} {service} {path}: {r.status_code} {r.text[:300]}")
        if not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            return None

    def _get(self, service: str, path: str, **params: Any) -> Any:
        return self._req("GET", service, path, params=params)

    def _mark(self, bucket: list[str], what: str) -> None:
        bucket.append(what)
        if bucket is not self.report.unchanged:
            verb = "created" if bucket is self.report.created else "updated"
            self.progress(f"{verb} {what}")

    # ------------------------------------------------------------------ lookups
    def domain_id(self, name: str | None) -> str:
        name = name or "default"
        if name == "default":
            return "default"
        if name not in self._domains:
            found = self._get("identity", "/v3/domains", name=name)["domains"]
            if not found:
                raise SeedError(f"no domain {name!r}")
            self._domains[name] = found[0]["id"]
        return self._domains[name]

    def project_id(self, name: str, domain: str | None = None) -> str:
        key = (name, self.domain_id(domain))
        if key not in self._projects:
            found = self._get("identity", "/v3/projects", name=name, domain_id=key[1])[
                "projects"]
            if not found:
                raise SeedError(f"no project {name!r} (list it under projects:)")
            self._projects[key] = found[0]["id"]
        return self._projects[key]

    def _one(self, service: str, path: str, key: str, **params: Any) -> dict[str, Any] | None:
        found = self._get(service, path, **params)[key]
        return found[0] if found else None

    # ------------------------------------------------------------------ apply
    def apply(self, doc: dict[str, Any]) -> SeedReport:
        """Apply every section of ``doc``, in dependency order (roles and projects before the
        users granted them, networks before routers...)."""
        sections: tuple[tuple[str, Callable[[dict[str, Any]], object]], ...] = (
            ("roles", lambda role: self._role(role["name"])),
            ("projects", self._project),
            ("users", self._user),
            ("flavors", self._flavor),
            ("images", self._image),
            ("networks", self._network),
            ("routers", self._router),
            ("security_groups", self._security_group),
            ("keypairs", self._keypair),
            ("quotas", self._quota),
        )
        for section, apply_one in sections:
            for spec in doc.get(section, []):
                apply_one(spec)
        return self.report

    def _role(self, name: str) -> str:
        found = self._one("identity", "/v3/roles", "roles", name=name)
        if found is not None:
            self._mark(self.report.unchanged, f"role {name}")
            return str(found["id"])
        role = self._req("POST", "identity", "/v3/roles", (201,),
                         json={"role": {"name": name}})["role"]
        self._mark(self.report.created, f"role {name}")
        return str(role["id"])

    def _project(self, spec: dict[str, Any]) -> None:
        dom = self.domain_id(spec.get("domain"))
        found = self._one("identity", "/v3/projects", "projects", name=spec["name"],
                          domain_id=dom)
        want = {k: spec[k] for k in ("description", "enabled") if k in spec}
        what = f"project {spec['name']}"
        if found is None:
            body = {"name": spec["name"], "domain_id": dom, **want}
            made = self._req("POST", "identity", "/v3/projects", (201,),
                             json={"project": body})["project"]
            self._projects[(spec["name"], dom)] = made["id"]
            self._mark(self.report.created, what)
            return
        self._projects[(spec["name"], dom)] = found["id"]
        self._patch_identity("project", found, want, what)

    def _patch_identity(self, kind: str, found: dict[str, Any], want: dict[str, Any],
                        what: str) -> None:
        """Bring the existing identity ``kind`` (``project``, ``user``) ``found`` in line with
        ``want``: PATCH the fields that differ (updated), or nothing (unchanged)."""
        diff = {k: v for k, v in want.items() if found.get(k) != v}
        if diff:
            self._req("PATCH", "identity", f"/v3/{kind}s/{found['id']}", json={kind: diff})
            self._mark(self.report.updated, what)
        else:
            self._mark(self.report.unchanged, what)

    def _user(self, spec: dict[str, Any]) -> None:
        dom = self.domain_id(spec.get("domain"))
        found = self._one("identity", "/v3/users", "users", name=spec["name"], domain_id=dom)
        want: dict[str, Any] = {k: spec[k] for k in ("email", "description") if k in spec}
        if "project" in spec:
            want["default_project_id"] = self.project_id(spec["project"], spec.get("domain"))
        what = f"user {spec['name']}"
        if found is None:
            body = {"name": spec["name"], "domain_id": dom, **want}
            if "password" in spec:
                body["password"] = spec["password"]
            found = self._req("POST", "identity", "/v3/users", (201,),
                              json={"user": body})["user"]
            self._mark(self.report.created, what)
        else:
            self._patch_identity("user", found, want, what)
        for grant in spec.get("roles", []):
            pid = self.project_id(grant["project"], spec.get("domain"))
            role = self._one("identity", "/v3/roles", "roles", name=grant["role"])
            if role is None:
                raise SeedError(f"no role {grant['role']!r} (list it under roles:)")
            path = f"/v3/projects/{pid}/users/{found['id']}/roles/{role['id']}"
            r = self.c.head(self.urls["identity"] + path, headers=self.h)
            what = f"role {grant['role']} of {spec['name']} on {grant['project']}"
            if r.status_code == 204:
                self._mark(self.report.unchanged, what)
            else:
                self._req("PUT", "identity", path, (204,))
                self._mark(self.report.created, what)

    def _flavor(self, spec: dict[str, Any]) -> None:
        flavors = self._get("compute", "/v2.1/flavors/detail", is_public="None")["flavors"]
        found = next((f for f in flavors if f["name"] == spec["name"]), None)
        what = f"flavor {spec['name']}"
        if found is not None:
            for key in ("vcpus", "ram", "disk"):
                if key in spec and found.get(key) != spec[key]:
                    raise SeedError(f"{what} exists with {key} {found.get(key)}, not "
                                    f"{spec[key]} (flavors cannot change; delete it first)")
            self._mark(self.report.unchanged, what)
            return
        body: dict[str, Any] = {"name": spec["name"], "vcpus": spec["vcpus"],
                                "ram": spec["ram"], "disk": spec.get("disk", 0),
                                "os-flavor-access:is_public": spec.get("public", True)}
        if "id" in spec:
            body["id"] = spec["id"]
        if "ephemeral" in spec:
            body["OS-FLV-EXT-DATA:ephemeral"] = spec["ephemeral"]
        if "swap" in spec:
            body["swap"] = spec["swap"]
        made = self._req("POST", "compute", "/v2.1/flavors", (200,),
                         json={"flavor": body})["flavor"]
        if spec.get("properties"):
            self._req("POST", "compute", f"/v2.1/flavors/{made['id']}/os-extra_specs",
                      json={"extra_specs": spec["properties"]})
        self._mark(self.report.created, what)

    def _image(self, spec: dict[str, Any]) -> None:
        what = f"image {spec['name']}"
        params: dict[str, Any] = {"name": spec["name"]}
        if "project" in spec:
            params["owner"] = self.project_id(spec["project"])
        if self._get("image", "/v2/images", **params)["images"]:
            self._mark(self.report.unchanged, what)
            return
        if "file" in spec and "url" in spec:
            raise SeedError(f"{what}: give file or url, not both")
        path = None
        if "file" in spec:
            path = Path(spec["file"]).expanduser()
            path = path if path.is_absolute() else self.base_dir / path
            if not path.is_file():
                raise SeedError(f"{what}: no file {path}")
        body: dict[str, Any] = {
            "name": spec["name"], "disk_format": spec.get("disk_format", "qcow2"),
            "container_format": spec.get("container_format", "bare"),
            "visibility": spec.get("visibility", "private"),
            **{k: spec[k] for k in ("min_disk", "min_ram") if k in spec},
            **spec.get("properties", {})}
        if "project" in spec:
            body["owner"] = params["owner"]
        img = self._req("POST", "image", "/v2/images", (201,), json=body)
        if path is not None:
            with path.open("rb") as fh:
                self._req("PUT", "image", f"/v2/images/{img['id']}/file", (204,),
                          content=fh, headers={"Content-Type": "application/octet-stream"},
                          timeout=None)
        elif "url" in spec:
            self._req("POST", "image", f"/v2/images/{img['id']}/import", (202,),
                      json={"method": {"name": "web-download", "uri": spec["url"]}})
        self._mark(self.report.created, what)

    def _owned(self, spec: dict[str, Any]) -> dict[str, str]:
        """The ``project_id`` a project-owned network resource is created for."""
        return {"project_id": self.project_id(spec["project"])} if "project" in spec else {}

    def _find_net(self, kind: str, spec: dict[str, Any]) -> dict[str, Any] | None:
        params = {"name": spec["name"], **self._owned(spec)}
        return self._one("network", f"/v2.0/{kind}", kind.replace("-", "_"), **params)

    def _network(self, spec: dict[str, Any]) -> None:
        what = f"network {spec['name']}"
        net = self._find_net("networks", spec)
        if net is None:
            body: dict[str, Any] = {"name": spec["name"], **self._owned(spec)}
            for key, api in (("shared", "shared"), ("external", "router:external"),
                             ("mtu", "mtu")):
                if key in spec:
                    body[api] = spec[key]
            net = self._req("POST", "network", "/v2.0/networks", (201,),
                            json={"network": body})["network"]
            self._mark(self.report.created, what)
        else:
            self._mark(self.report.unchanged, what)
        for sub in spec.get("subnets", []):
            swhat = f"subnet {sub['name']}"
            if self._one("network", "/v2.0/subnets", "subnets", name=sub["name"],
                         network_id=net["id"]) is not None:
                self._mark(self.report.unchanged, swhat)
                continue
            sbody = {"network_id": net["id"], "ip_version": sub.get("ip_version", 4),
                     **self._owned(spec),
                     **{k: v for k, v in sub.items() if k != "ip_version"}}
            self._req("POST", "network", "/v2.0/subnets", (201,), json={"subnet": sbody})
            self._mark(self.report.created, swhat)

    def _router(self, spec: dict[str, Any]) -> None:
        what = f"router {spec['name']}"
        router = self._find_net("routers", spec)
        if router is None:
            body: dict[str, Any] = {"name": spec["name"], **self._owned(spec)}
            if "external_gateway" in spec:
                ext = self._one("network", "/v2.0/networks", "networks",
                                name=spec["external_gateway"])
                if ext is None:
                    raise SeedError(f"{what}: no network {spec['external_gateway']!r}")
                body["external_gateway_info"] = {"network_id": ext["id"]}
            router = self._req("POST", "network", "/v2.0/routers", (201,),
                               json={"router": body})["router"]
            self._mark(self.report.created, what)
        else:
            self._mark(self.report.unchanged, what)
        ports = self._get("network", "/v2.0/ports", device_id=router["id"])["ports"]
        attached = {ip["subnet_id"] for p in ports for ip in p.get("fixed_ips", [])}
        for name in spec.get("interfaces", []):
            sub = self._one("network", "/v2.0/subnets", "subnets", name=name,
                            **self._owned(spec))
            if sub is None:
                raise SeedError(f"{what}: no subnet {name!r}")
            iwhat = f"interface of {spec['name']} on {name}"
            if sub["id"] in attached:
                self._mark(self.report.unchanged, iwhat)
                continue
            self._req("PUT", "network", f"/v2.0/routers/{router['id']}/add_router_interface",
                      json={"subnet_id": sub["id"]})
            self._mark(self.report.created, iwhat)

    @staticmethod
    def _rule_key(rule: dict[str, Any]) -> tuple[Any, ...]:
        proto = rule.get("protocol")
        return (rule.get("direction") or "ingress", rule.get("ethertype") or "IPv4",
                None if proto in (None, "any") else str(proto),
                rule.get("port_range_min"), rule.get("port_range_max"),
                rule.get("remote_ip_prefix"), rule.get("remote_group_id"))

    def _security_group(self, spec: dict[str, Any]) -> None:
        what = f"security group {spec['name']}"
        group = self._find_net("security-groups", {**spec})
        if group is None:
            body = {"name": spec["name"], **self._owned(spec),
                    **({"description": spec["description"]} if "description" in spec
                       else {})}
            group = self._req("POST", "network", "/v2.0/security-groups", (201,),
                              json={"security_group": body})["security_group"]
            self._mark(self.report.created, what)
        else:
            self._mark(self.report.unchanged, what)
        have = {self._rule_key(r) for r in group.get("security_group_rules", [])}
        for rule in spec.get("rules", []):
            body = {k: v for k, v in rule.items() if k not in ("port", "remote_group")}
            if "port" in rule:
                body["port_range_min"] = body["port_range_max"] = rule["port"]
            if "remote_group" in rule:
                other = self._find_net("security-groups", {"name": rule["remote_group"],
                                                           **spec, "rules": []})
                if other is None:
                    raise SeedError(f"{what}: no security group {rule['remote_group']!r}")
                body["remote_group_id"] = other["id"]
            body.setdefault("direction", "ingress")
            body.setdefault("ethertype", "IPv4")
            rwhat = f"rule of {spec['name']} {self._rule_key(body)[:5]}"
            if self._rule_key(body) in have:
                self._mark(self.report.unchanged, rwhat)
                continue
            body["security_group_id"] = group["id"]
            self._req("POST", "network", "/v2.0/security-group-rules", (201,),
                      json={"security_group_rule": body})
            have.add(self._rule_key(body))
            self._mark(self.report.created, rwhat)

    def _keypair(self, spec: dict[str, Any]) -> None:
        what = f"keypair {spec['name']}"
        params: dict[str, Any] = {}
        if "user" in spec:
            user = self._one("identity", "/v3/users", "users", name=spec["user"],
                             domain_id="default")
            if user is None:
                raise SeedError(f"{what}: no user {spec['user']!r}")
            params["user_id"] = user["id"]
        r = self.c.get(f"{self.urls['compute']}/v2.1/os-keypairs/{spec['name']}",
                       headers=self.h, params=params)
        if r.status_code == 200:
            self._mark(self.report.unchanged, what)
            return
        key = spec.get("public_key")
        if "public_key_file" in spec:
            path = Path(spec["public_key_file"]).expanduser()
            path = path if path.is_absolute() else self.base_dir / path
            try:
                key = path.read_text().strip()
            except OSError as exc:
                raise SeedError(f"{what}: {path}: {exc.strerror}") from exc
        if not key:
            raise SeedError(f"{what}: public_key or public_key_file is required (a seed "
                            "never makes private keys)")
        body: dict[str, Any] = {"name": spec["name"], "public_key": key, **params}
        self._req("POST", "compute", "/v2.1/os-keypairs", (200, 201), json={"keypair": body})
        self._mark(self.report.created, what)

    def _quota(self, spec: dict[str, Any]) -> None:
        pid = self.project_id(spec["project"])
        if "compute" in spec:
            self._set_quota(f"compute quotas of {spec['project']}", "compute",
                            f"/v2.1/os-quota-sets/{pid}", "quota_set", spec["compute"])
        if "network" in spec:
            self._set_quota(f"network quotas of {spec['project']}", "network",
                            f"/v2.0/quotas/{pid}", "quota", spec["network"])
        if "volume" in spec:
            self._set_quota(f"volume quotas of {spec['project']}", "volume",
                            f"/v3/os-quota-sets/{pid}", "quota_set", spec["volume"])

    def _set_quota(self, what: str, service: str, path: str, key: str,
                   want: dict[str, int]) -> None:
        have = self._get(service, path)[key]
        diff = {k: v for k, v in want.items() if have.get(k) != v}
        if not diff:
            self._mark(self.report.unchanged, what)
            return
        self._req("PUT", service, path, json={key: diff})
        self._mark(self.report.updated, what)
