"""The state ``ComputeManager`` shares with the record stores it is made of
(``flavors.FlavorStore``, ``keypairs.KeypairStore``, ``hosts.HostStore``): declared here so
each store module states what it uses; ``ComputeManager.__init__`` sets it."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy.orm import Session

from onestack.common.limits import LimitSource
from onestack.db.engine import Database


class ManagerState:
    """Attributes and the write transaction every store of the compute manager uses."""

    db: Database
    placement: Any
    default_az: str
    unified_limits: LimitSource | None
    host_listeners: list[Callable[[], None]]
    _node_uuids: dict[int, str]

    def write(self) -> AbstractContextManager[Session]:
        """One write transaction (``ComputeManager.write``)."""
        raise NotImplementedError
