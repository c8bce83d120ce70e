"""The changes an update makes to one volume or snapshot row: its name, description and
metadata (the same fields on both)."""

from __future__ import annotations

from typing import Any

from onestack.common.errors import NotFound


def _updated(row: Any, changes: dict[str, Any]) -> Any:
    """``row`` with a new name, description or metadata (what an update may change)."""
    for key in ("name", "description"):
        if key in changes:
            setattr(row, key, changes[key])
    if "metadata" in changes:
        row.metadata_ = dict(changes["metadata"])
    return row


def _set_meta(row: Any, metadata: dict[str, str], replace: bool) -> dict[str, str]:
    row.metadata_ = dict(metadata) if replace else {**(row.metadata_ or {}), **metadata}
    return dict(row.metadata_)


def _drop_meta(row: Any, label: str, key: str) -> None:
    meta = dict(row.metadata_ or {})
    if key not in meta:
        raise NotFound(f"{label} {row.id} has no metadata with key {key}.")
    del meta[key]
    row.metadata_ = meta
