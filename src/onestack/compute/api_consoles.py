"""Compute API: remote consoles of a server (``/servers/{id}/remote-consoles`` from 2.6, the
deprecated ``os-get*Console`` actions) and ``/os-console-auth-tokens`` (admins): a console URL
carries a new token of the console token store, which the console proxy checks."""

from __future__ import annotations

import logging
from typing import Any

from onestack.api.app import ApiRequest
from onestack.api.routes import serves
from onestack.common.errors import BadRequest, Conflict, NotFound, Unauthorized, ValidationError
from onestack.compute import schemas, states
from onestack.compute.manager import InstanceDict
from onestack.compute.microversions import ver
from onestack.compute.resource_base import ResourceHandler, tgt

LOG = logging.getLogger(__name__)


class Consoles(ResourceHandler):
    """Console URLs with new tokens, and what a token connects to."""

    async def a_deprecated_console(self, req: ApiRequest, inst: InstanceDict,
                                   args: Any) -> dict[str, Any]:
        ctype = args.get("type") if isinstance(args, dict) else None
        if ctype not in ("novnc", "xvpvnc", "spice-html5", "rdp-html5", "serial"):
            raise BadRequest("Invalid console type specified")
        return {"console": {"type": ctype, "url": await self.new_console_url(req, inst, ctype)}}

    async def new_console_url(self, req: ApiRequest, inst: InstanceDict, ctype: str) -> str:
        """A console URL with a new token (``inst`` was loaded through the tenancy-checked
        manager, so the caller may see it). Only ``novnc`` exists: other types, and drivers
        without a remote console, answer 400 "Unavailable console type" as Nova does."""
        unavailable = BadRequest(f"Unavailable console type {ctype}.")
        if ctype != "novnc" or self.api.console_tokens is None:
            raise unavailable
        if inst["vm_state"] != states.ACTIVE or not inst["host"]:
            raise Conflict(f"Instance {inst['uuid']} is not ready yet.")
        info = await self.api.call(inst, "get_vnc_console", instance_uuid=inst["uuid"])
        if not isinstance(info, dict) or info.get("error") == "unavailable":
            raise unavailable
        if "port" not in info:
            raise Conflict(f"Instance {inst['uuid']} is not ready yet.")
        token, _ = await req.run(self.api.console_tokens.create, inst["uuid"], ctype,
                                 str(info["host"]), int(info["port"]), inst["host"])
        # noVNC >= 1.1 takes the WebSocket path (with the token) from ``path``.
        return f"{self.api.console_url}/vnc_lite.html?path=%3Ftoken%3D{token}"

    @serves("GET", "/v2.1/os-console-auth-tokens/{console_token}")
    async def show_console_token(self, req: ApiRequest) -> dict[str, Any]:
        """``GET /os-console-auth-tokens/{token}`` (admin): what a console token connects
        to. Unknown or expired tokens: 404; before 2.31 only RDP tokens were shown."""
        req.enforce("os_compute_api:os-console-auth-tokens", tgt(req))
        conn = None
        if self.api.console_tokens is not None:
            conn = await req.run(self.api.console_tokens.validate, req.param("console_token"))
        if conn is None:
            raise NotFound("Token not found")
        if ver(req) < "2.31" and conn.console_type != "rdp-html5":
            raise Unauthorized("The requested console type details are not accessible")
        doc = {"instance_uuid": conn.instance_uuid, "host": conn.host, "port": conn.port,
               "internal_access_path": conn.internal_access_path}
        if ver(req) >= "2.99":
            doc["tls_port"] = None
        return {"console": doc}

    @serves("POST", "/v2.1/servers/{server_id}/remote-consoles")
    async def remote_console(self, req: ApiRequest) -> dict[str, Any]:
        if ver(req) < "2.6":
            raise NotFound("The resource could not be found.")
        inst = await self.find_server(req, "os_compute_api:os-remote-consoles")
        body = await req.json()
        rc = schemas.obj(body, "remote_console")
        protocol = rc.get("protocol")
        ctype = rc.get("type")
        valid = {"vnc": ("novnc", "xvpvnc"), "spice": ("spice-html5",),
                 "rdp": ("rdp-html5",), "serial": ("serial",), "mks": ("webmks",)}
        if protocol not in valid or ctype not in valid[protocol]:
            raise ValidationError("Invalid input for field/attribute remote_console.")
        url = await self.new_console_url(req, inst, ctype)
        return {"remote_console": {"protocol": protocol, "type": ctype, "url": url}}

