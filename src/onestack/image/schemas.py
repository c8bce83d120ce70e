"""Image API request validation and the JSON-Schema documents served at ``/v2/schemas/*``.

Clients take these documents literally: python-glanceclient builds its image model from
``/v2/schemas/image`` and validates every image it creates, updates or lists against it, so
the document describes exactly what ``views.image`` returns (nullable where we return null,
``additionalProperties`` of type string for custom properties).
"""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

import jsonschema

from onestack.common.errors import BadRequest, Forbidden

DISK_FORMATS = ["ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso",
                "ploop"]
CONTAINER_FORMATS = ["ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"]
VISIBILITIES = ["public", "private", "shared", "community"]
STATUSES = ["queued", "saving", "active", "killed", "deleted", "pending_delete",
            "deactivated", "uploading", "importing"]
MEMBER_STATUSES = ["pending", "accepted", "rejected"]

#: Attributes users may never set (server-managed).
READ_ONLY = frozenset({
    "id", "status", "created_at", "updated_at", "checksum", "size", "virtual_size",
    "os_hash_algo", "os_hash_value", "self", "file", "schema", "direct_url", "stores",
})
#: Attributes reserved for the service itself.
RESERVED = frozenset({"location", "deleted", "deleted_at", "locations"})
#: ``os_glance_*`` names are the service's own namespace.
RESERVED_PREFIX = "os_glance"
#: Core attributes a PATCH/POST may set.
WRITABLE_CORE = frozenset({
    "name", "visibility", "protected", "os_hidden", "min_disk", "min_ram", "disk_format",
    "container_format", "tags", "owner",
})
CORE = READ_ONLY | WRITABLE_CORE
MAX_TAG_LEN = 255
MAX_NAME_LEN = 255
MAX_PROP_NAME = 255
MAX_PROP_VALUE = 65535

_NULL_STR = ["null", "string"]


def _image_properties() -> dict[str, Any]:
    return {
        "id": {"type": "string", "description": "The image's UUID.",
               "pattern": ("^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}"
                           "-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$")},
        "name": {"type": _NULL_STR, "maxLength": MAX_NAME_LEN,
                 "description": "Human-readable name; need not be unique."},
        "status": {"type": "string", "readOnly": True, "enum": STATUSES,
                   "description": "Where the image is in its life cycle."},
        "visibility": {"type": "string", "enum": VISIBILITIES,
                       "description": "Who may see and use the image."},
        "protected": {"type": "boolean",
                      "description": "A protected image cannot be deleted."},
        "os_hidden": {"type": "boolean",
                      "description": "Hidden images are left out of default image lists."},
        "checksum": {"type": _NULL_STR, "readOnly": True, "maxLength": 32,
                     "description": "MD5 of the image data (legacy)."},
        "os_hash_algo": {"type": _NULL_STR, "readOnly": True, "maxLength": 64,
                         "description": "Algorithm of os_hash_value (sha512)."},
        "os_hash_value": {"type": _NULL_STR, "readOnly": True, "maxLength": 128,
                          "description": "Secure hash of the image data."},
        "owner": {"type": _NULL_STR, "maxLength": 255,
                  "description": "Project that owns the image."},
        "size": {"type": ["null", "integer"], "readOnly": True,
                 "description": "Size of the image data in bytes."},
        "virtual_size": {"type": ["null", "integer"], "readOnly": True,
                         "description": "Size of the virtual disk in bytes, when known."},
        "container_format": {"type": _NULL_STR, "enum": [None, *CONTAINER_FORMATS],
                             "description": "Format of the container."},
        "disk_format": {"type": _NULL_STR, "enum": [None, *DISK_FORMATS],
                        "description": "Format of the disk."},
        "created_at": {"type": "string", "readOnly": True,
                       "description": "When the image was created."},
        "updated_at": {"type": "string", "readOnly": True,
                       "description": "When the image was last changed."},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": MAX_TAG_LEN},
                 "description": "Tags of the image."},
        "min_ram": {"type": "integer", "minimum": 0,
                    "description": "Memory (MiB) needed to boot the image."},
        "min_disk": {"type": "integer", "minimum": 0,
                     "description": "Disk space (GiB) needed to boot the image."},
        "self": {"type": "string", "readOnly": True, "description": "URL of this image."},
        "file": {"type": "string", "readOnly": True, "description": "URL of the image data."},
        "stores": {"type": "string", "readOnly": True,
                   "description": "Comma-separated ids of the stores holding the data."},
        "schema": {"type": "string", "readOnly": True,
                   "description": "URL of this schema."},
        "locations": {"type": "array", "description": "Where the data is (shown when the "
                      "cloud shows locations).",
                      "items": {"type": "object", "required": ["url", "metadata"],
                                "properties": {"url": {"type": "string", "maxLength": 2048},
                                               "metadata": {"type": "object"}}}},
        "kernel_id": {"type": _NULL_STR, "description": "Kernel image id (AMI style)."},
        "ramdisk_id": {"type": _NULL_STR, "description": "Ramdisk image id (AMI style)."},
        "instance_uuid": {"type": "string",
                          "description": "Server this image was snapshotted from."},
        "architecture": {"type": "string", "description": "CPU architecture needed."},
        "os_distro": {"type": "string", "description": "Operating system distribution."},
        "os_version": {"type": "string", "description": "Operating system version."},
    }


def image_schema() -> dict[str, Any]:
    """``GET /v2/schemas/image``."""
    return {
        "name": "image",
        "properties": _image_properties(),
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def images_schema() -> dict[str, Any]:
    """``GET /v2/schemas/images``."""
    return {
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema()},
            "schema": {"type": "string"},
            "first": {"type": "string"},
            "next": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def member_schema() -> dict[str, Any]:
    """``GET /v2/schemas/member``."""
    return {
        "name": "member",
        "properties": {
            "member_id": {"type": "string", "description": "Project the image is shared with."},
            "image_id": {"type": "string", "description": "The shared image."},
            "status": {"type": "string", "enum": MEMBER_STATUSES,
                       "description": "Whether the member accepted the image."},
            "created_at": {"type": "string", "readOnly": True},
            "updated_at": {"type": "string", "readOnly": True},
            "schema": {"type": "string", "readOnly": True},
        },
    }


def members_schema() -> dict[str, Any]:
    """``GET /v2/schemas/members``."""
    return {
        "name": "members",
        "properties": {
            "members": {"type": "array", "items": member_schema()},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "describedby", "href": "{schema}"}],
    }


def _metadef(name: str, props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    stamps = {"created_at": {"type": "string", "readOnly": True, "format": "date-time"},
              "updated_at": {"type": "string", "readOnly": True, "format": "date-time"},
              "schema": {"type": "string", "readOnly": True},
              "self": {"type": "string", "readOnly": True}}
    return {"name": name, "properties": {**props, **stamps}, "required": required,
            "additionalProperties": False}


def _metadef_list(name: str, item: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "properties": {name: {"type": "array", "items": item},
                                         "first": {"type": "string"},
                                         "next": {"type": "string"},
                                         "schema": {"type": "string"}},
            "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                      {"rel": "describedby", "href": "{schema}"}]}


def metadef_schemas() -> dict[str, dict[str, Any]]:
    """Schema documents of the metadata-definition catalog (``/v2/schemas/metadefs/*``)."""
    from onestack.image.metadefs import PROPERTY_SCHEMA

    text = {"type": "string"}
    name80 = {"type": "string", "maxLength": 80}
    prop_def = {k: v for k, v in PROPERTY_SCHEMA.items() if k != "additionalProperties"}
    prop_map = {"type": "object", "additionalProperties": prop_def}
    rta = _metadef("resource_type_association", {
        "name": name80, "prefix": name80, "properties_target": name80}, ["name"])
    obj = _metadef("object", {"name": {"type": "string", "maxLength": 80},
                              "description": text, "required": {"type": "array",
                                                                "items": text},
                              "properties": prop_map}, ["name"])
    tag = _metadef("tag", {"name": {"type": "string", "maxLength": 255}}, ["name"])
    namespace = _metadef("namespace", {
        "namespace": name80, "display_name": name80, "description": {
            "type": "string", "maxLength": 500},
        "visibility": {"type": "string", "enum": ["public", "private"]},
        "protected": {"type": "boolean"}, "owner": {"type": "string", "maxLength": 255},
        "resource_type_associations": {"type": "array", "items": rta},
        "properties": prop_map, "objects": {"type": "array", "items": obj},
        "tags": {"type": "array", "items": tag}}, ["namespace"])
    prop = {"name": "property", "properties": {"name": {"type": "string", "maxLength": 255},
                                               **PROPERTY_SCHEMA["properties"]},
            "required": ["name", *PROPERTY_SCHEMA["required"]],
            "additionalProperties": False}
    resource_type = {"name": "resource_type", "properties": {
        "name": name80, "created_at": text, "updated_at": text}}
    return {
        "metadefs/namespace": namespace,
        "metadefs/namespaces": _metadef_list("namespaces", namespace),
        "metadefs/resource_type": rta,
        "metadefs/resource_types": _metadef_list("resource_type_associations", rta),
        "metadefs/resource_type_list": _metadef_list("resource_types", resource_type),
        "metadefs/object": obj,
        "metadefs/objects": _metadef_list("objects", obj),
        "metadefs/property": prop,
        "metadefs/properties": {"name": "properties", "properties": {
            "properties": {"type": "object", "additionalProperties": prop_def},
            "schema": text}},
        "metadefs/tag": tag,
        "metadefs/tags": _metadef_list("tags", tag),
    }


# ---------------------------------------------------------------- validation
_WRITABLE_SCHEMA = {
    "type": "object",
    "properties": {k: v for k, v in _image_properties().items() if not v.get("readOnly")},
    "additionalProperties": {"type": "string", "maxLength": MAX_PROP_VALUE},
}
_VALIDATOR = jsonschema.Draft4Validator(_WRITABLE_SCHEMA)


def check_attribute_name(name: str) -> None:
    """403 for reserved and read-only names, 400 for unusable ones."""
    if not isinstance(name, str) or not name:
        raise BadRequest("Property names must be non-empty strings.")
    if name.startswith(RESERVED_PREFIX):
        raise Forbidden(f"Attribute '{name}' is reserved.")
    if name in RESERVED:
        raise Forbidden(f"Attribute '{name}' is reserved.")
    if name in READ_ONLY:
        raise Forbidden(f"Attribute '{name}' is read-only.")
    if len(name) > MAX_PROP_NAME:
        raise BadRequest(f"Property name is longer than {MAX_PROP_NAME} characters.")


def validate_image(doc: dict[str, Any]) -> None:
    """400 unless ``doc`` (writable attributes only) matches the image schema."""
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(doc))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        raise BadRequest(f"Provided object does not match schema 'image': {error.message}"
                         + (f" (at '{where}')" if where else ""))
    tags = doc.get("tags") or []
    if len(set(tags)) != len(tags):
        # Glance keeps tags as a set; duplicates are folded, not an error.
        doc["tags"] = list(dict.fromkeys(tags))


def check_uuid(value: Any, what: str = "id") -> str:
    """A canonical dashed UUID, or 400."""
    try:
        parsed = uuid.UUID(str(value))
    except (ValueError, AttributeError, TypeError):
        raise BadRequest(f"Invalid {what}: {value!r} is not a valid UUID.") from None
    if not re.fullmatch(r"[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}", str(value)):
        raise BadRequest(f"Invalid {what}: {value!r} is not a valid UUID.")
    return str(parsed)


def writable_copy(doc: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(doc)
