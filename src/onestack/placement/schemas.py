"""Request-body validation for the placement API (JSON Schema, per microversion)."""

from __future__ import annotations

from typing import Any

import jsonschema

from onestack.placement import errors
from onestack.placement.microversion import Version

INT_MAX = 2147483647
UUID_PATTERN = (r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                r"[0-9a-fA-F]{12}$")
RC_PATTERN = r"^[A-Z0-9_]+$"
CUSTOM_PATTERN = r"^CUSTOM_[A-Z0-9_]+$"

UUID = {"type": "string", "pattern": UUID_PATTERN}
GENERATION = {"type": "integer", "minimum": 0}
NAME = {"type": "string", "minLength": 1, "maxLength": 200}


def validate(doc: Any, schema: dict[str, Any]) -> None:
    """400 (``JSON does not validate: …``) unless ``doc`` matches ``schema``."""
    try:
        jsonschema.Draft4Validator(schema).validate(doc)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        suffix = f" (at '{where}')" if where else ""
        raise errors.bad_request(f"JSON does not validate: {exc.message}{suffix}") from exc


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required,
            "additionalProperties": False}


def provider_create(v: Version) -> dict[str, Any]:
    props: dict[str, Any] = {"name": NAME, "uuid": UUID}
    if v >= (1, 14):
        props["parent_provider_uuid"] = {"anyOf": [UUID, {"type": "null"}]}
    return _obj(props, ["name"])


def provider_update(v: Version) -> dict[str, Any]:
    props: dict[str, Any] = {"name": NAME}
    if v >= (1, 14):
        props["parent_provider_uuid"] = {"anyOf": [UUID, {"type": "null"}]}
    return _obj(props, ["name"])


_INVENTORY_FIELDS: dict[str, Any] = {
    "total": {"type": "integer", "minimum": 1, "maximum": INT_MAX},
    "reserved": {"type": "integer", "minimum": 0, "maximum": INT_MAX},
    "min_unit": {"type": "integer", "minimum": 1, "maximum": INT_MAX},
    "max_unit": {"type": "integer", "minimum": 1, "maximum": INT_MAX},
    "step_size": {"type": "integer", "minimum": 1, "maximum": INT_MAX},
    "allocation_ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": True,
                         "maximum": 3.40282e38},
}

INVENTORIES_PUT = _obj({
    "inventories": {"type": "object", "additionalProperties": False,
                    "patternProperties": {RC_PATTERN: _obj(_INVENTORY_FIELDS, ["total"])}},
    "resource_provider_generation": GENERATION,
}, ["inventories", "resource_provider_generation"])

INVENTORY_POST = _obj({"resource_class": {"type": "string", "pattern": RC_PATTERN,
                                          "maxLength": 255},
                       **_INVENTORY_FIELDS}, ["resource_class", "total"])

INVENTORY_PUT = _obj({"resource_provider_generation": GENERATION, **_INVENTORY_FIELDS},
                     ["total", "resource_provider_generation"])

TRAIT_NAME = {"type": "string", "pattern": RC_PATTERN, "maxLength": 255}
PROVIDER_TRAITS_PUT = _obj({"traits": {"type": "array", "items": TRAIT_NAME},
                            "resource_provider_generation": GENERATION},
                           ["traits", "resource_provider_generation"])

AGG_LIST = {"type": "array", "items": UUID, "uniqueItems": True}


def aggregates_put(v: Version) -> dict[str, Any]:
    if v < (1, 19):
        return AGG_LIST
    return _obj({"aggregates": AGG_LIST, "resource_provider_generation": GENERATION},
                ["aggregates", "resource_provider_generation"])


RESOURCE_CLASS = _obj({"name": {"type": "string", "pattern": CUSTOM_PATTERN,
                                "maxLength": 255}}, ["name"])

_RESOURCES = {"type": "object", "minProperties": 1,
              "patternProperties": {RC_PATTERN: {"type": "integer", "minimum": 1,
                                                 "maximum": INT_MAX}},
              "additionalProperties": False}
_OWNER = {"type": "string", "minLength": 1, "maxLength": 255}
CONSUMER_TYPE = {"type": "string", "pattern": RC_PATTERN, "maxLength": 255}


def _alloc_dict(v: Version, allow_empty: bool) -> dict[str, Any]:
    return {"type": "object", "minProperties": 0 if allow_empty else 1,
            "additionalProperties": False,
            "patternProperties": {UUID_PATTERN: {
                "type": "object", "additionalProperties": False, "required": ["resources"],
                "properties": {"resources": _RESOURCES, "generation": {}}}}}


def _consumer_props(v: Version) -> tuple[dict[str, Any], list[str]]:
    props: dict[str, Any] = {"project_id": _OWNER, "user_id": _OWNER}
    required = ["project_id", "user_id"] if v >= (1, 8) else []
    if v >= (1, 28):
        props["consumer_generation"] = {"anyOf": [GENERATION, {"type": "null"}]}
        required.append("consumer_generation")
    if v >= (1, 38):
        props["consumer_type"] = CONSUMER_TYPE
        required.append("consumer_type")
    return props, required


def allocations_put(v: Version) -> dict[str, Any]:
    props, required = _consumer_props(v)
    if v < (1, 12):
        props["allocations"] = {"type": "array", "minItems": 1, "items": _obj({
            "resource_provider": _obj({"uuid": UUID}, ["uuid"]),
            "resources": _RESOURCES}, ["resource_provider", "resources"])}
    else:
        props["allocations"] = _alloc_dict(v, allow_empty=v >= (1, 28))
    return _obj(props, ["allocations", *required])


def allocations_post(v: Version) -> dict[str, Any]:
    props, required = _consumer_props(v)
    props["allocations"] = _alloc_dict(v, allow_empty=True)
    return {"type": "object", "minProperties": 1, "additionalProperties": False,
            "patternProperties": {UUID_PATTERN: _obj(props, ["allocations", *required])}}
