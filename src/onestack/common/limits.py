"""The seam through which services read Keystone's unified limits for their quota checks."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session


class LimitSource(Protocol):
    """One service's unified limits in one region (``identity.limits.UnifiedLimits``)."""

    def for_project(self, c: Session | Connection, project_id: str) -> dict[str, int]:
        """The project's limit per resource name (its own limit, else the registered
        default; resources without a registered limit are absent), read in ``c``."""
        ...
