"""Response shaping: volume-service rows -> Cinder v3 API dicts."""

from __future__ import annotations

from typing import Any

from onestack.api.microversion import APIVersion
from onestack.common.context import RequestContext
from onestack.common.timeutils import isotime
from onestack.volume.records import SnapshotRecord, VolumeRecord, VolumeTypeRecord


def _links(base: str, kind: str, rid: str, project: str) -> list[dict[str, str]]:
    return [{"href": f"{base}/v3/{project}/{kind}/{rid}", "rel": "self"},
            {"href": f"{base}/{project}/{kind}/{rid}", "rel": "bookmark"}]


def attachment(volume_id: str, a: dict[str, Any]) -> dict[str, Any]:
    return {"id": volume_id, "attachment_id": a["id"], "volume_id": volume_id,
            "server_id": a.get("server_id"), "host_name": a.get("host_name"),
            "device": a.get("device"), "attached_at": a.get("attached_at")}


def volume_summary(base: str, v: VolumeRecord) -> dict[str, Any]:
    return {"id": v.id, "name": v.name, "links": _links(base, "volumes", v.id, v.project_id)}


def volume(base: str, v: VolumeRecord, ctx: RequestContext, ver: APIVersion,
           type_names: dict[str, str], extended: bool = True) -> dict[str, Any]:
    """Cinder's detailed volume view at microversion ``ver``; ``extended`` adds the
    ``os-vol-*`` attributes that show and list carry (create and update answers do not)."""
    doc: dict[str, Any] = {
        "id": v.id, "name": v.name, "description": v.description, "size": v.size,
        "status": v.status, "availability_zone": v.availability_zone,
        "created_at": isotime(v.created_at, subsecond=True),
        "updated_at": isotime(v.updated_at, subsecond=True),
        "attachments": [attachment(v.id, a) for a in v.attachments or []
                        if a.get("attach_status", "attached") == "attached"],
        "bootable": "true" if v.bootable else "false",
        "encrypted": False, "multiattach": v.multiattach,
        "metadata": dict(v.metadata_ or {}), "snapshot_id": v.snapshot_id,
        "source_volid": v.source_volid, "user_id": v.user_id,
        "volume_type": type_names.get(v.volume_type_id or ""),
        "consistencygroup_id": None, "replication_status": None, "migration_status": None,
        "links": _links(base, "volumes", v.id, v.project_id),
    }
    if extended:
        doc["os-vol-tenant-attr:tenant_id"] = v.project_id
    if v.image_metadata and extended:
        doc["volume_image_metadata"] = dict(v.image_metadata)
    if ctx.is_admin and extended:
        doc["os-vol-host-attr:host"] = v.host
        doc["os-vol-mig-status-attr:migstat"] = None
        doc["os-vol-mig-status-attr:name_id"] = None
    if ver >= "3.13":
        doc["group_id"] = v.group_id
    if ver >= "3.21" and ctx.is_admin:
        doc["provider_id"] = None
    if ver >= "3.48":
        doc["service_uuid"] = None
        doc["shared_targets"] = False
    if ver >= "3.61" and ctx.is_admin:
        doc["cluster_name"] = None
    if ver >= "3.63":
        doc["volume_type_id"] = v.volume_type_id
    if ver >= "3.65":
        doc["consumes_quota"] = True
    return doc


def snapshot(base: str, s: SnapshotRecord, ver: APIVersion, extended: bool = True
             ) -> dict[str, Any]:
    """A snapshot; ``extended`` adds ``os-extended-snapshot-attributes`` (show, detail)."""
    doc: dict[str, Any] = {
        "id": s.id, "name": s.name, "description": s.description, "volume_id": s.volume_id,
        "size": s.size, "status": s.status,
        "created_at": isotime(s.created_at, subsecond=True),
        "updated_at": isotime(s.updated_at, subsecond=True),
        "metadata": dict(s.metadata_ or {}),
    }
    if extended:
        doc["os-extended-snapshot-attributes:progress"] = s.progress
        doc["os-extended-snapshot-attributes:project_id"] = s.project_id
    if ver >= "3.14":
        doc["group_snapshot_id"] = s.group_snapshot_id
    if ver >= "3.41":
        doc["user_id"] = s.user_id
    if ver >= "3.65":
        doc["consumes_quota"] = True
    return doc


def volume_type(t: VolumeTypeRecord, admin: bool, shape: str = "show") -> dict[str, Any]:
    """A volume type as show/list (``show``), create (``create``: no QoS id) or update
    (``update``: neither the access flag nor the QoS id) answer it."""
    doc: dict[str, Any] = {"id": t.id, "name": t.name, "description": t.description,
                           "is_public": t.is_public,
                           "extra_specs": dict(t.extra_specs or {}) if admin else {}}
    if shape != "update":
        doc["os-volume-type-access:is_public"] = t.is_public
    if shape == "show":
        doc["qos_specs_id"] = t.qos_specs_id
    return doc


def quota_set(project_id: str, limits: dict[str, int],
              usage: dict[str, int] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": project_id}
    for key, limit in sorted(limits.items()):
        if usage is None:
            doc[key] = limit
        else:
            doc[key] = {"limit": limit, "in_use": usage.get(key, 0), "reserved": 0,
                        "allocated": 0}
    return doc


def limits(lim: dict[str, int], used: dict[str, int]) -> dict[str, Any]:
    return {"limits": {"rate": [], "absolute": {
        "maxTotalVolumes": lim["volumes"], "maxTotalSnapshots": lim["snapshots"],
        "maxTotalVolumeGigabytes": lim["gigabytes"], "maxTotalBackups": lim["backups"],
        "maxTotalBackupGigabytes": lim["backup_gigabytes"],
        "totalVolumesUsed": used["volumes"], "totalSnapshotsUsed": used["snapshots"],
        "totalGigabytesUsed": used["gigabytes"], "totalBackupsUsed": used["backups"],
        "totalBackupGigabytesUsed": used["backup_gigabytes"]}}}
