"""The metadata service: Nova's metadata API as a small ASGI app (default port 8775).

Guests reach it at ``http://169.254.169.254`` through the network data plane's metadata proxy,
which adds the headers that say who is asking (as Neutron's metadata agent does for Nova):

* ``X-Instance-ID``: the instance uuid;
* ``X-Instance-ID-Signature``: ``hex(HMAC-SHA256(shared secret, instance id))``;
* optionally ``X-Tenant-ID`` (must match the instance's project) and ``X-Forwarded-For``.

Requests without them get 400, a bad signature 403, an unknown instance 404 (plain text, as
Nova answers). Paths served:

* ``/`` (EC2 versions), ``/openstack`` (OpenStack versions), ``/openstack/<v>/`` listings;
* ``/openstack/<v>/{meta_data.json,network_data.json,vendor_data.json,vendor_data2.json,
  user_data}``;
* ``/<ec2 version>/meta-data/...`` (``hostname``, ``instance-id``, ``local-ipv4``,
  ``public-keys/0/openssh-key``, ``placement/availability-zone``, …) and ``/<v>/user-data``.

The documents come from :func:`onestack.metadata.content.build_metadata`, the builder the
config drive uses too. Instances are found with a ``lookup(uuid) -> dict | None`` function
(blocking; run in a thread) — :func:`compute_lookup` adapts the compute manager.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from starlette.types import Receive, Scope, Send

from onestack.common.context import RequestContext
from onestack.config import Settings
from onestack.metadata.content import (
    EC2_VERSIONS,
    OPENSTACK_VERSIONS,
    InstanceMetadata,
    build_metadata,
)

LOG = logging.getLogger(__name__)

Lookup = Callable[[str], "dict[str, Any] | None"]


def sign_instance_id(secret: str, instance_id: str) -> str:
    """The ``X-Instance-ID-Signature`` of ``instance_id`` (what the metadata proxy sends)."""
    return hmac.new(secret.encode(), instance_id.encode(), hashlib.sha256).hexdigest()


def load_or_create_secret(data_dir: Path, configured: str = "") -> str:
    """The shared secret: the configured one, else ``DATA/metadata-secret`` (made once)."""
    if configured:
        return configured
    path = Path(data_dir) / "metadata-secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    os.replace(tmp, path)
    return secret


class InstanceSource(Protocol):
    """What the metadata service reads and writes of the compute service (its manager)."""

    def get_instance(self, ctx: RequestContext | None, uuid: str) -> dict[str, Any]:
        """The instance (admin view when ``ctx`` is None); raises when there is none."""
        ...

    def update_system_metadata(self, uuid: str, **items: Any) -> None:
        """Set items of the instance's system metadata (the password a guest posts)."""
        ...


class PortSource(Protocol):
    """What the metadata service reads of the network service, through compute's network
    seam (``compute.network.LocalNetwork``): a server's ports as its guest sees them."""

    def guest_ports(self, instance_uuid: str,
                    order: list[list[str]] | None = None) -> list[dict[str, Any]]:
        """The server's ports in the hypervisor driver's shape, each with its
        ``floating_ips``, in the order of the boot request's NICs (``order``: the
        instance's ``system_metadata.nic_order``)."""
        ...


def compute_lookup(manager: InstanceSource, network: PortSource | None = None) -> Lookup:
    """A lookup reading instances through ``ComputeManager.get_instance`` (admin view); with
    a port source, the ports are read live (floating IPs associated after the boot
    included), else from the instance's port cache."""

    def lookup(uuid: str) -> dict[str, Any] | None:
        try:
            inst: dict[str, Any] = manager.get_instance(None, uuid)
        except Exception:  # noqa: BLE001 - unknown/deleted instance
            return None
        sysmeta = inst.get("system_metadata") or {}
        ports = sysmeta.get("networks", inst.get("networks") or [])
        if network is not None:
            try:
                ports = network.guest_ports(uuid, sysmeta.get("nic_order")) or ports
            except Exception:  # noqa: BLE001 - the cache is the answer then
                LOG.debug("live ports of %s unavailable", uuid, exc_info=True)
        return {**inst, "networks": ports, "image": {"id": inst.get("image_ref")}}

    return lookup


#: Longest password a guest may post (Nova's limit).
MAX_PASSWORD = 256
PasswordStore = Callable[[str, str], None]


def _listing(items: list[str]) -> bytes:
    return "\n".join(items).encode()


class MetadataApp:
    """The ASGI app (see the module docstring)."""

    def __init__(self, lookup: Lookup, secret: str, cache_ttl: float = 15.0,
                 store_password: PasswordStore | None = None) -> None:
        if not secret:
            raise ValueError("the metadata service needs a shared secret")
        self.lookup = lookup
        #: ``(instance uuid, password)``: keeps what a guest posts to ``.../password``.
        self.store_password = store_password
        self.secret = secret
        self.cache_ttl = cache_ttl
        self._cache: dict[str, tuple[float, InstanceMetadata, dict[str, Any]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        status, ctype, body = await self.handle(scope, receive)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body",
                    "body": b"" if scope.get("method") == "HEAD" else body})

    async def handle(self, scope: Scope, receive: Receive | None = None
                     ) -> tuple[int, str, bytes]:
        path = scope.get("path", "/")
        if path in ("/healthcheck",):
            return 200, "text/plain", b"OK"
        method = scope.get("method")
        posting = method == "POST" and _is_password_path(path)
        if method not in ("GET", "HEAD") and not posting:
            return 405, "text/plain", b"405 Method Not Allowed"
        headers = {k.decode().lower(): v.decode(errors="replace")
                   for k, v in scope.get("headers", [])}
        instance_id = headers.get("x-instance-id")
        signature = headers.get("x-instance-id-signature")
        if not instance_id or not signature:
            return 400, "text/plain", b"400 Bad Request: X-Instance-ID and its signature needed"
        expected = sign_instance_id(self.secret, instance_id)
        if not hmac.compare_digest(expected, signature):
            LOG.warning("metadata request for %s with a bad signature (from %s)", instance_id,
                        headers.get("x-forwarded-for", "?"))
            return 403, "text/plain", b"403 Forbidden: invalid proxy request signature"
        found = await self._metadata(instance_id)
        if found is None:
            return 404, "text/plain", b"404 Not Found"
        md, inst = found
        tenant = headers.get("x-tenant-id")
        if tenant and inst.get("project_id") and tenant != inst["project_id"]:
            return 404, "text/plain", b"404 Not Found"
        if posting:
            return await self._post_password(instance_id, inst, receive)
        return self.route(md, path)

    async def _post_password(self, uuid: str, inst: dict[str, Any],
                             receive: Receive | None) -> tuple[int, str, bytes]:
        """A guest posts its (encrypted) password once, as Nova's metadata API allows."""
        if self.store_password is None or receive is None:
            return 405, "text/plain", b"405 Method Not Allowed"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_PASSWORD:
                return 400, "text/plain", b"400 Bad Request: password too long"
            if not message.get("more_body"):
                break
        if ((inst.get("system_metadata") or {}).get("password")):
            return 409, "text/plain", b"409 Conflict: the password is already set"
        await asyncio.to_thread(self.store_password, uuid, body.decode(errors="replace"))
        self._cache.pop(uuid, None)
        return 200, "text/plain", b""

    async def _metadata(self, uuid: str) -> tuple[InstanceMetadata, dict[str, Any]] | None:
        loop = asyncio.get_running_loop()
        cached = self._cache.get(uuid)
        if cached is not None and loop.time() - cached[0] < self.cache_ttl:
            return cached[1], cached[2]
        inst = await asyncio.to_thread(self.lookup, uuid)
        if inst is None:
            self._cache.pop(uuid, None)
            return None
        md = build_metadata(inst)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[uuid] = (loop.time(), md, inst)
        return md, inst

    # ------------------------------------------------------------------ routing
    def route(self, md: InstanceMetadata, path: str) -> tuple[int, str, bytes]:
        parts = [p for p in path.split("/") if p]
        if not parts:
            return 200, "text/plain", _listing([*EC2_VERSIONS, "latest"])
        if parts[0] == "openstack":
            return self._openstack(md, parts[1:], path.endswith("/"))
        return self._ec2(md, parts)

    def _openstack(self, md: InstanceMetadata, parts: list[str],
                   trailing: bool) -> tuple[int, str, bytes]:
        if not parts:
            return 200, "text/plain", _listing([*OPENSTACK_VERSIONS, "latest"])
        version = parts[0]
        if version != "latest" and version not in OPENSTACK_VERSIONS:
            return 404, "text/plain", b"404 Not Found"
        files = md.openstack_files(version)
        if len(parts) == 1:
            return 200, "text/plain", _listing(sorted(files))
        if len(parts) == 2 and parts[1] in files:
            name = parts[1]
            ctype = "application/json" if name.endswith(".json") else "text/plain"
            if name == "user_data":
                ctype = "application/octet-stream"
            return 200, ctype, files[name]
        return 404, "text/plain", b"404 Not Found"

    def _ec2(self, md: InstanceMetadata, parts: list[str]) -> tuple[int, str, bytes]:
        version = parts[0]
        if version != "latest" and version not in EC2_VERSIONS:
            return 404, "text/plain", b"404 Not Found"
        if len(parts) == 1:
            return 200, "text/plain", _listing(
                ["meta-data/"] + (["user-data"] if md.user_data is not None else []))
        if parts[1] == "user-data" and len(parts) == 2:
            if md.user_data is None:
                return 404, "text/plain", b"404 Not Found"
            return 200, "application/octet-stream", md.user_data
        if parts[1] != "meta-data":
            return 404, "text/plain", b"404 Not Found"
        node: Any = self._ec2_tree(md)
        for part in parts[2:]:
            if not isinstance(node, dict) or part not in node:
                return 404, "text/plain", b"404 Not Found"
            node = node[part]
        if isinstance(node, dict):
            if parts[2:] == ["public-keys"]:
                names = [str(k) for k in (md.meta_data.get("public_keys") or {})]
                return 200, "text/plain", _listing(
                    [f"{i}={name}" for i, name in enumerate(names)])
            return 200, "text/plain", _listing(
                [f"{k}/" if isinstance(v, dict) else str(k) for k, v in sorted(node.items())])
        if isinstance(node, list):
            return 200, "text/plain", _listing([str(x) for x in node])
        return 200, "text/plain", str(node).encode()

    @staticmethod
    def _ec2_tree(md: InstanceMetadata) -> dict[str, Any]:
        tree = json.loads(json.dumps(md.ec2))
        return tree  # type: ignore[no-any-return]


def _is_password_path(path: str) -> bool:
    """``/openstack/<version>/password`` (where guests post their password)."""
    parts = [p for p in path.split("/") if p]
    return len(parts) == 3 and parts[0] == "openstack" and parts[2] == "password"


def build_metadata_app(settings: Settings, compute: InstanceSource,
                       network: PortSource | None = None) -> MetadataApp:
    """The metadata service of ``onestack up``: instances read through the compute manager
    (ports live from the network service when given), the secret from
    ``metadata_proxy_shared_secret`` or ``DATA/metadata-secret``."""
    secret = load_or_create_secret(settings.data_dir, settings.metadata_proxy_shared_secret)

    def store_password(uuid: str, password: str) -> None:
        compute.update_system_metadata(uuid, password=password)

    return MetadataApp(compute_lookup(compute, network), secret,
                       store_password=store_password)
