"""The changes an update makes to one volume or snapshot row: its name, description and
metadata (the same fields on both), and the policies that guard them for each kind; and
the key-by-key reads and removals of metadata and specs, and the free-name check of volume
types, group types and QoS specs, that every kind of row shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from onestack.common.errors import Conflict, NotFound
from onestack.db.volume import GroupType, QosSpecs, Snapshot, Volume, VolumeType

R = TypeVar("R", Volume, Snapshot)


@dataclass(frozen=True)
class RowKind(Generic[R]):
    """A kind of row (volume or snapshot) whose name, description and metadata the API
    changes the same way, with the policy each change needs."""

    model: type[R]
    #: The word faults name a row of this kind by ("Volume").
    label: str
    update_policy: str
    get_metadata_policy: str
    set_metadata_policy: str
    delete_metadata_policy: str


VOLUMES: RowKind[Volume] = RowKind(
    Volume, "Volume", "volume:update", "volume:get_volume_metadata",
    "volume:update_volume_metadata", "volume:delete_volume_metadata")
SNAPSHOTS: RowKind[Snapshot] = RowKind(
    Snapshot, "Snapshot", "volume:update_snapshot", "volume:get_snapshot_metadata",
    "volume:update_snapshot_metadata", "volume:delete_snapshot_metadata")


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
    row.metadata_ = without_key(row.metadata_, key,
                                f"{label} {row.id} has no metadata with key {key}.")


def only_key(mapping: dict[str, Any], key: str, missing: str) -> dict[str, Any]:
    """``{key: mapping[key]}`` (the ``GET …/{key}`` of metadata or specs); a 404 saying
    ``missing`` when there is no such key."""
    if key not in mapping:
        raise NotFound(missing)
    return {key: mapping[key]}


def check_name_free(s: Session, model: type[VolumeType | GroupType | QosSpecs], name: str,
                    label: str) -> None:
    """409 ``{label} {name} already exists.`` when a ``model`` row has that name."""
    if s.scalar(select(model.id).where(model.name == name)):
        raise Conflict(f"{label} {name} already exists.")


def without_key(mapping: dict[str, str] | None, key: str, missing: str) -> dict[str, str]:
    """A copy of ``mapping`` (metadata, specs) without ``key``; a 404 saying ``missing``
    when it has no such key."""
    out = dict(mapping or {})
    if key not in out:
        raise NotFound(missing)
    del out[key]
    return out
