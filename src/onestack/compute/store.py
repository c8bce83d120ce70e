"""The state ``ComputeManager`` shares with the record stores it is made of
(``flavors.FlavorStore``, ``keypairs.KeypairStore``, ``hosts.HostStore``,
``claims.ClaimStore``, ``groups.GroupStore``, ``quota_store.QuotaStore``,
``migrations.MigrationStore``, ``instance_actions.ActionLog``): declared here so each store
module states what it uses; ``ComputeManager.__init__`` sets it."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.common.errors import NotFound
from onestack.common.limits import LimitSource
from onestack.compute.placement import ComputePlacement
from onestack.db.compute import Instance
from onestack.db.engine import Database

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                      r"[0-9a-fA-F]{12}$")


def looks_like_uuid(value: str) -> bool:
    return bool(_UUID_RE.match(value or ""))


class ManagerState:
    """Attributes and the write transaction every store of the compute manager uses."""

    db: Database
    placement: ComputePlacement | None
    default_az: str
    unified_limits: LimitSource | None
    host_listeners: list[Callable[[], None]]
    _node_uuids: dict[int, str]

    def write(self) -> AbstractContextManager[Session]:
        """One write transaction (``ComputeManager.write``)."""
        raise NotImplementedError

    def core_write(self) -> AbstractContextManager[Connection]:
        """One Core write transaction (``ComputeManager.core_write``)."""
        raise NotImplementedError

    def serial(self) -> AbstractContextManager[None]:
        """This process's compute writes queued on SQLite (``ComputeManager.serial``)."""
        raise NotImplementedError

    def _instance_row(self, ctx: RequestContext | None, s: Session, uuid: str,
                      deleted_ok: bool = False) -> Instance:
        """The instance ``ctx`` may see (404 otherwise; deleted ones with ``deleted_ok``)."""
        row = s.get(Instance, uuid) if looks_like_uuid(uuid) else None
        if (row is None or (row.deleted and not deleted_ok)
                or (ctx is not None and not ctx.is_admin and row.project_id != ctx.project_id)):
            raise NotFound(f"Instance {uuid} could not be found.")
        return row
