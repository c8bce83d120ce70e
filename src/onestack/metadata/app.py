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
from typing import Any

from starlette.types import Receive, Scope, Send

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


def compute_lookup(manager: Any) -> Lookup:
    """A lookup reading instances through ``ComputeManager.get_instance`` (admin view)."""

    def lookup(uuid: str) -> dict[str, Any] | None:
        try:
            inst: dict[str, Any] = manager.get_instance(None, uuid)
        except Exception:  # noqa: BLE001 - unknown/deleted instance
            return None
        sysmeta = inst.get("system_metadata") or {}
        return {**inst, "networks": sysmeta.get("networks", inst.get("networks") or []),
                "image": {"id": inst.get("image_ref")}}

    return lookup


def _listing(items: list[str]) -> bytes:
    return "\n".join(items).encode()


class MetadataApp:
    """The ASGI app (see the module docstring)."""

    def __init__(self, lookup: Lookup, secret: str, cache_ttl: float = 15.0) -> None:
        if not secret:
            raise ValueError("the metadata service needs a shared secret")
        self.lookup = lookup
        self.secret = secret
        self.cache_ttl = cache_ttl
        self._cache: dict[str, tuple[float, InstanceMetadata, dict[str, Any]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        status, ctype, body = await self.handle(scope)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body",
                    "body": b"" if scope.get("method") == "HEAD" else body})

    async def handle(self, scope: Scope) -> tuple[int, str, bytes]:
        path = scope.get("path", "/")
        if path in ("/healthcheck",):
            return 200, "text/plain", b"OK"
        if scope.get("method") not in ("GET", "HEAD"):
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
        return self.route(md, path)

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


def build_metadata_app(settings: Any, compute: Any) -> MetadataApp:
    """The metadata service of ``onestack up``: instances read through the compute manager,
    the secret from ``metadata_proxy_shared_secret`` or ``DATA/metadata-secret``."""
    secret = load_or_create_secret(settings.data_dir,
                                   getattr(settings, "metadata_proxy_shared_secret", ""))
    return MetadataApp(compute_lookup(compute), secret)
