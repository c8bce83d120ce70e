"""The block-storage service's records as the API layer reads them.

Each protocol names the attributes the API handlers and ``views.py`` read (the owned
rows' common ones through ``OwnedRecord``); the rows
the managers return satisfy them as they are (no conversion). The API layer only
reads them: every change of a row is a manager method with plain arguments."""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol


class OwnedRecord(Protocol):
    """What a volume, snapshot, backup or group has as an owned row (``db.volume._Owned``):
    its id, the project and user owning it, its name and description."""

    id: str
    project_id: str
    user_id: str
    name: str | None
    description: str | None


class VolumeRecord(OwnedRecord, Protocol):
    """A volume as its views, filters and actions read it."""

    size: int
    status: str
    availability_zone: str
    volume_type_id: str | None
    bootable: bool
    multiattach: bool
    snapshot_id: str | None
    source_volid: str | None
    host: str | None
    provider_location: str | None
    metadata_: dict[str, str]
    image_metadata: dict[str, str]
    group_id: str | None
    attachments: list[dict[str, Any]]
    created_at: dt.datetime
    updated_at: dt.datetime | None


class SnapshotRecord(OwnedRecord, Protocol):
    """A volume snapshot as its views and filters read it."""

    volume_id: str
    size: int
    status: str
    progress: str
    group_snapshot_id: str | None
    metadata_: dict[str, str]
    created_at: dt.datetime
    updated_at: dt.datetime | None


class VolumeTypeRecord(Protocol):
    """A volume type as its views read it."""

    id: str
    name: str
    description: str | None
    is_public: bool
    extra_specs: dict[str, str]
    projects: list[str]
    qos_specs_id: str | None


class QosSpecsRecord(Protocol):
    """A QoS specs entry as its view reads it."""

    id: str
    name: str
    consumer: str
    specs: dict[str, str]


class BackupRecord(OwnedRecord, Protocol):
    """A backup as its views and filters read it."""

    volume_id: str
    status: str
    size: int
    object_count: int
    container: str | None
    parent_id: str | None
    snapshot_id: str | None
    fail_reason: str | None
    availability_zone: str
    metadata_: dict[str, str]
    data_timestamp: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime | None


class TransferRecord(Protocol):
    """A volume transfer as its views read it (never its key)."""

    id: str
    volume_id: str
    project_id: str
    name: str | None
    no_snapshots: bool
    created_at: dt.datetime


class MessageRecord(Protocol):
    """A user message as its view and filters read it."""

    id: str
    project_id: str
    resource_type: str
    resource_uuid: str | None
    event_id: str
    message: str
    request_id: str
    created_at: dt.datetime
    expires_at: dt.datetime


class GroupTypeRecord(Protocol):
    """A group type as its view, filter and sort read it."""

    id: str
    name: str
    description: str | None
    is_public: bool
    group_specs: dict[str, str]
    created_at: dt.datetime


class GroupRecord(OwnedRecord, Protocol):
    """A volume group as its views read it."""

    status: str
    group_type_id: str
    volume_type_ids: list[str]
    availability_zone: str
    group_snapshot_id: str | None
    source_group_id: str | None
    created_at: dt.datetime


class GroupSnapshotRecord(Protocol):
    """A group snapshot as its view reads it."""

    id: str
    group_id: str
    group_type_id: str
    name: str | None
    description: str | None
    status: str
    created_at: dt.datetime
