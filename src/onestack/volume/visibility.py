"""Which rows of the block-storage service a caller sees: its own project's, or, for an
admin, every project's (a row of another project is a 404, as if it did not exist)."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute

from onestack.common.context import RequestContext
from onestack.common.errors import NotFound


class Owned(Protocol):
    """A row that belongs to one project (volume, snapshot, group, backup, ...)."""

    project_id: str


R = TypeVar("R", bound=Owned)
S = TypeVar("S", bound=Select[Any])


def visible(ctx: RequestContext, row: R | None, what: str, rid: str) -> R:
    """``row`` if the caller may see it; otherwise 404 ``{what} {rid} could not be found.``"""
    if row is None or (not ctx.is_admin and row.project_id != ctx.project_id):
        raise NotFound(f"{what} {rid} could not be found.")
    return row


def scoped(q: S, project_id_column: InstrumentedAttribute[str], ctx: RequestContext,
           all_projects: bool, project_id: str | None = None) -> S:
    """``q`` limited to the caller's project, unless an admin asks for ``all_projects``
    (then to ``project_id`` when one is given)."""
    if not (ctx.is_admin and all_projects):
        return q.where(project_id_column == (ctx.project_id or ""))
    if project_id:
        return q.where(project_id_column == project_id)
    return q
