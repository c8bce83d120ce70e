"""The shape of ``POST /servers`` by microversion, as data (JSON Schema, like Nova's).

Every field the create request may carry is typed here, and nothing else is accepted: an
unknown attribute of ``server`` (or of the body) is a 400 at every microversion, as in Nova.
What a field means (does the flavor exist, is the key pair the user's) stays with the code
that uses it; this only guarantees that a value of the wrong type or size never reaches it.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from onestack.common.errors import ValidationError

_NAME = {"type": "string", "minLength": 1, "maxLength": 255}
_OPT_STR = {"type": ["string", "null"], "maxLength": 255}
_BOOL = {"type": ["boolean", "string"],
         "enum": [True, False, "True", "true", "TRUE", "False", "false", "FALSE", "1", "0",
                  "yes", "no", "on", "off", "Yes", "No", "On", "Off"]}
_COUNT = {"oneOf": [{"type": "integer", "minimum": 1},
                    {"type": "string", "pattern": "^[0-9]*$", "minLength": 1,
                     "maxLength": 19}]}
_UUID = {"type": "string", "pattern": "^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                                      "[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"}
_METADATA = {"type": "object",
             "patternProperties": {"^.{1,255}$": {"type": "string", "maxLength": 255}},
             "additionalProperties": False}
_TAG = {"type": "string", "minLength": 1, "maxLength": 60, "pattern": "^[^,/]*$"}
_FQDN = {"type": "string", "minLength": 1, "maxLength": 255,
         "pattern": "^[a-zA-Z0-9-._]*$"}
_BDM = {
    "type": "object",
    "properties": {
        "virtual_name": {"type": "string", "maxLength": 255},
        "volume_id": _UUID, "snapshot_id": _UUID, "image_id": _UUID,
        "volume_size": {"type": ["integer", "string", "null"], "pattern": "^[0-9]+$",
                        "minimum": 1, "maximum": 2 ** 31 - 1},
        "device_name": {"type": "string", "minLength": 1, "maxLength": 255,
                        "pattern": "^[a-zA-Z0-9._/-]*$"},
        "delete_on_termination": _BOOL, "no_device": {},
        "connection_info": {"type": "string", "maxLength": 16777215},
    },
    "additionalProperties": False,
}
_BDM_V2 = copy.deepcopy(_BDM)
_BDM_V2["properties"].update({
    "source_type": {"type": "string", "enum": ["volume", "image", "snapshot", "blank"]},
    "uuid": {"type": "string", "minLength": 1, "maxLength": 255,
             "pattern": "^[a-zA-Z0-9._-]*$"},
    "destination_type": {"type": "string", "enum": ["local", "volume"]},
    "guest_format": {"type": "string", "maxLength": 255},
    "device_type": {"type": "string", "maxLength": 255},
    "disk_bus": {"type": "string", "maxLength": 255},
    "boot_index": {"type": ["integer", "string", "null"], "pattern": "^-?[0-9]+$",
                   "minimum": -(2 ** 31), "maximum": 2 ** 31 - 1},
})
_NETWORK = {
    "type": "object",
    "properties": {"fixed_ip": {"type": "string", "maxLength": 64},
                   "port": {"type": ["string", "null"], "maxLength": 255},
                   "uuid": {"type": "string", "maxLength": 255}},
    "additionalProperties": False,
}
_HINTS = {
    "type": "object",
    "properties": {
        "group": _UUID,
        "different_host": {"type": ["string", "array"], "items": {"type": "string"},
                           "maxLength": 255},
        "same_host": {"type": ["string", "array"], "items": {"type": "string"},
                      "maxLength": 255},
        "query": {"type": ["string", "object"]},
        "target_cell": _NAME,
        "different_cell": {"type": ["string", "array"], "items": {"type": "string"}},
        "build_near_host_ip": {"type": "string", "maxLength": 64},
        "cidr": {"type": "string", "pattern": "^/[0-9a-f.:]+$"},
    },
    # Nova lets filters define their own hints.
    "additionalProperties": True,
}

_BASE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "server": {
            "type": "object",
            "properties": {
                "name": _NAME,
                "imageRef": {"type": "string", "maxLength": 2048},
                "flavorRef": {"type": ["string", "integer"], "minLength": 1,
                              "maxLength": 2048, "minimum": 0},
                "adminPass": {"type": "string", "maxLength": 255},
                "metadata": _METADATA,
                "networks": {"type": "array", "items": _NETWORK},
                "OS-DCF:diskConfig": {"type": "string", "enum": ["AUTO", "MANUAL"]},
                "accessIPv4": {"type": "string", "maxLength": 64},
                "accessIPv6": {"type": "string", "maxLength": 64},
                "personality": {"type": "array", "items": {
                    "type": "object",
                    "properties": {"path": {"type": "string", "maxLength": 255},
                                   "contents": {"type": "string"}},
                    "additionalProperties": False}},
                "availability_zone": _NAME,
                "block_device_mapping": {"type": "array", "items": _BDM},
                "block_device_mapping_v2": {"type": "array", "items": _BDM_V2},
                "config_drive": _BOOL,
                "key_name": _NAME,
                "min_count": _COUNT,
                "max_count": _COUNT,
                "return_reservation_id": _BOOL,
                "security_groups": {"type": "array", "items": {
                    "type": "object", "properties": {"name": _NAME},
                    "additionalProperties": False}},
                "user_data": {"type": "string", "maxLength": 65535},
            },
            "required": ["name", "flavorRef"],
            "additionalProperties": False,
        },
        "os:scheduler_hints": _HINTS,
        "OS-SCH-HNT:scheduler_hints": _HINTS,
    },
    "required": ["server"],
    "additionalProperties": False,
}


def _server(schema: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = schema["properties"]["server"]["properties"]
    return props


@lru_cache(maxsize=128)
def _validator(minor: int) -> jsonschema.Draft4Validator:
    """The create schema of microversion 2.``minor``."""
    schema = copy.deepcopy(_BASE)
    server = _server(schema)
    if minor >= 19:
        server["description"] = _OPT_STR
    if minor >= 32:
        server["networks"]["items"]["properties"]["tag"] = _TAG
    if minor == 32 or minor >= 42:
        server["block_device_mapping_v2"]["items"]["properties"]["tag"] = _TAG
    if minor >= 37:
        schema["properties"]["server"]["required"].append("networks")
        items = copy.deepcopy(server["networks"]["items"])
        items["properties"]["uuid"] = _UUID
        server["networks"] = {"oneOf": [{"type": "array", "items": items},
                                        {"type": "string", "enum": ["none", "auto"]}]}
    if minor >= 52:
        server["tags"] = {"type": "array", "items": _TAG, "maxItems": 50}
    if minor >= 57:
        del server["personality"]
    if minor >= 63:
        server["trusted_image_certificates"] = {
            "type": ["array", "null"], "minItems": 1, "maxItems": 50, "uniqueItems": True,
            "items": {"type": "string", "minLength": 1, "maxLength": 255}}
    if minor >= 67:
        server["block_device_mapping_v2"]["items"]["properties"]["volume_type"] = _OPT_STR
    if minor >= 74:
        server["host"] = _FQDN
        server["hypervisor_hostname"] = _FQDN
    if minor >= 90:
        server["hostname"] = {"type": "string", "minLength": 1,
                              "maxLength": 255 if minor >= 94 else 63,
                              "pattern": "^[a-zA-Z0-9-._]*$"}
    return jsonschema.Draft4Validator(schema)


def check_create(body: Any, minor: int) -> None:
    """400 (Nova's ``Invalid input for field/attribute ...``) unless ``body`` is a create
    request of microversion 2.``minor``."""
    error = best_match(_validator(minor).iter_errors(body))
    if error is None:
        return
    where = "/".join(str(p) for p in error.path) or "server"
    field = where.rsplit("/", 1)[-1] if error.path else "server"
    value = str(error.instance)[:200]
    raise ValidationError(f"Invalid input for field/attribute {field}. Value: {value}. "
                          f"{error.message[:300]}")
