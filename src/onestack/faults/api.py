"""onestack's own control API, served on the identity port under ``/_onestack/``.

- ``GET /_onestack/health`` (no token): the cloud's version, services and fault rule count;
- ``GET|POST|DELETE /_onestack/faults`` and ``GET|DELETE /_onestack/faults/{id}`` (admin
  only: the ``admin`` role, OpenStack's default for anything that changes the whole cloud):
  list, add, clear and remove fault rules (``onestack.faults.rules``).

Errors use Keystone's fault body (the port's service).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from starlette.responses import Response

from onestack import __version__, runstate
from onestack.api.app import ApiRequest, FastJSON
from onestack.api.policy import Policy
from onestack.api.routes import serves
from onestack.common.errors import NotFound
from onestack.faults.rules import SETTLE, FaultTable, parse_rule

POLICY_DEFAULTS = {
    "onestack:faults:read": "role:admin",
    "onestack:faults:write": "role:admin",
}


class ControlAPI:
    """Handlers of the ``/_onestack/`` routes of one data dir."""

    def __init__(self, table: FaultTable, data_dir: Path,
                 policy_file: str | None = None) -> None:
        self.table = table
        self.data_dir = Path(data_dir)
        self.policy = Policy(POLICY_DEFAULTS, policy_file)

    def _enforce(self, req: ApiRequest, action: str) -> None:
        self.policy.enforce(action, req.ctx.policy_creds(), {})

    @serves("GET", "/_onestack/health", public=True)
    async def health(self, req: ApiRequest) -> dict[str, Any]:
        state = runstate.read(self.data_dir)
        return {"version": __version__,
                "status": "running" if state is not None else "starting",
                "services": dict(state.services) if state is not None else {},
                "fault_rules": len(await req.run(self.table.list))}

    @serves("GET", "/_onestack/faults")
    async def list_faults(self, req: ApiRequest) -> dict[str, Any]:
        self._enforce(req, "onestack:faults:read")
        rules = await req.run(self.table.list)
        return {"faults": [r.to_dict() for r in rules]}

    @serves("POST", "/_onestack/faults")
    async def add_fault(self, req: ApiRequest) -> Response:
        self._enforce(req, "onestack:faults:write")
        body = await req.json()
        rule = parse_rule(body.get("fault") if isinstance(body, dict) and "fault" in body
                          else body)
        await req.run(self.table.add, rule)
        await asyncio.sleep(SETTLE)  # every process of the cloud applies it from now on
        return FastJSON({"fault": rule.to_dict()}, status_code=201)

    @serves("GET", "/_onestack/faults/{fault_id}")
    async def get_fault(self, req: ApiRequest) -> dict[str, Any]:
        self._enforce(req, "onestack:faults:read")
        fid = req.param("fault_id")
        for rule in await req.run(self.table.list):
            if rule.id == fid:
                return {"fault": rule.to_dict()}
        raise NotFound(f"Could not find fault rule: {fid}.")

    @serves("DELETE", "/_onestack/faults/{fault_id}")
    async def delete_fault(self, req: ApiRequest) -> None:
        self._enforce(req, "onestack:faults:write")
        fid = req.param("fault_id")
        if not await req.run(self.table.remove, fid):
            raise NotFound(f"Could not find fault rule: {fid}.")
        await asyncio.sleep(SETTLE)

    @serves("DELETE", "/_onestack/faults")
    async def clear_faults(self, req: ApiRequest) -> None:
        self._enforce(req, "onestack:faults:write")
        await req.run(self.table.clear)
        await asyncio.sleep(SETTLE)

