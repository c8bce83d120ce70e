"""Response shaping for the image API (Glance v2 documents)."""

from __future__ import annotations

from typing import Any

from onestack.common.timeutils import isotime
from onestack.image.manager import ImageInfo, MemberInfo
from onestack.image.records import TaskRecord


def image(info: ImageInfo, stores: list[str] | None = None,
          locations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One image: core attributes, custom properties flattened in, links.

    ``stores``: ids of the stores holding the data, highest weight first. ``locations``:
    shown only when the cloud shows locations (``image_locations``).
    """
    doc: dict[str, Any] = dict(info.properties)
    doc.update({
        "id": info.id,
        "name": info.name,
        "status": info.status,
        "visibility": info.visibility,
        "protected": info.protected,
        "os_hidden": info.os_hidden,
        "checksum": info.checksum,
        "os_hash_algo": info.os_hash_algo,
        "os_hash_value": info.os_hash_value,
        "owner": info.owner,
        "size": info.size,
        "virtual_size": info.virtual_size,
        "min_disk": info.min_disk,
        "min_ram": info.min_ram,
        "container_format": info.container_format,
        "disk_format": info.disk_format,
        "created_at": isotime(info.created_at),
        "updated_at": isotime(info.updated_at),
        "tags": list(info.tags),
        "self": f"/v2/images/{info.id}",
        "file": f"/v2/images/{info.id}/file",
        "schema": "/v2/schemas/image",
    })
    if info.location and stores:
        doc["stores"] = ",".join(stores)
    if locations is not None:
        doc["locations"] = locations
    internal = info.internal or {}
    # Import bookkeeping, shown (as Glance does) once an import has been asked for.
    if "importing_to" in internal:
        doc["os_glance_importing_to_stores"] = ",".join(internal["importing_to"])
    failed = internal.get("failed_import")
    if isinstance(failed, str):
        failed = [failed]
    if failed is not None:
        doc["os_glance_failed_import"] = ",".join(failed)
    return doc


def member(m: MemberInfo) -> dict[str, Any]:
    return {
        "member_id": m.member_id,
        "image_id": m.image_id,
        "status": m.status,
        "created_at": isotime(m.created_at),
        "updated_at": isotime(m.updated_at),
        "schema": "/v2/schemas/member",
    }


def task(t: TaskRecord) -> dict[str, Any]:
    return {
        "id": t.id,
        "type": t.type,
        "status": t.status,
        "owner": t.owner,
        "image_id": t.image_id,
        "request_id": t.request_id,
        "user_id": t.user_id,
        "input": t.input,
        "result": t.result,
        "message": t.message,
        "created_at": isotime(t.created_at),
        "updated_at": isotime(t.updated_at),
        "expires_at": isotime(t.expires_at),
    }
