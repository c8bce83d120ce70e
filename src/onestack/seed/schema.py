"""The seed file's shape (a JSON schema) and its loading: YAML, at most ``MAX_BYTES``, every
key known (a typo is an error, not a silently ignored resource)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator

MAX_BYTES = 1 << 20
_NAME = {"type": "string", "minLength": 1, "maxLength": 255}
_TEXT = {"type": "string", "maxLength": 65535}
_PROJECT = _NAME  # a project name (in the resource's domain, default ``default``)


def _obj(props: dict[str, Any], required: tuple[str, ...] = ("name",)) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required),
            "additionalProperties": False}


def _list(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item, "maxItems": 10000}


_ASSIGNMENT = _obj({"project": _PROJECT, "role": _NAME}, ("project", "role"))
_RULE = _obj({
    "direction": {"enum": ["ingress", "egress"]},
    "ethertype": {"enum": ["IPv4", "IPv6"]},
    "protocol": {"type": ["string", "integer", "null"]},
    "port": {"type": "integer", "minimum": 0, "maximum": 65535},
    "port_range_min": {"type": "integer", "minimum": 0, "maximum": 65535},
    "port_range_max": {"type": "integer", "minimum": 0, "maximum": 65535},
    "remote_ip_prefix": {"type": "string", "maxLength": 64},
    "remote_group": _NAME,
    "description": _TEXT,
}, ())
_SUBNET = _obj({
    "name": _NAME, "cidr": {"type": "string", "maxLength": 64},
    "ip_version": {"enum": [4, 6]}, "gateway_ip": {"type": ["string", "null"]},
    "enable_dhcp": {"type": "boolean"},
    "dns_nameservers": _list({"type": "string", "maxLength": 64}),
    "allocation_pools": _list(_obj({"start": {"type": "string"}, "end": {"type": "string"}},
                                   ("start", "end"))),
}, ("name", "cidr"))
_QUOTA = {"type": "object", "additionalProperties": {"type": "integer", "minimum": -1},
          "maxProperties": 64}

SEED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "projects": _list(_obj({"name": _NAME, "domain": _NAME, "description": _TEXT,
                                "enabled": {"type": "boolean"}})),
        "roles": _list(_obj({"name": _NAME})),
        "users": _list(_obj({
            "name": _NAME, "domain": _NAME, "password": {"type": "string", "maxLength": 4096},
            "email": {"type": "string", "maxLength": 255}, "description": _TEXT,
            "project": _PROJECT, "roles": _list(_ASSIGNMENT)})),
        "flavors": _list(_obj({
            "name": _NAME, "id": {"type": "string", "maxLength": 255},
            "vcpus": {"type": "integer", "minimum": 1}, "ram": {"type": "integer",
                                                             "minimum": 1},
            "disk": {"type": "integer", "minimum": 0}, "public": {"type": "boolean"},
            "ephemeral": {"type": "integer", "minimum": 0},
            "swap": {"type": "integer", "minimum": 0},
            "properties": {"type": "object", "additionalProperties": {"type": "string"}}},
            ("name", "vcpus", "ram"))),
        "images": _list(_obj({
            "name": _NAME, "file": {"type": "string", "maxLength": 4096},
            "url": {"type": "string", "maxLength": 4096},
            "disk_format": {"type": "string", "maxLength": 32},
            "container_format": {"type": "string", "maxLength": 32},
            "visibility": {"enum": ["public", "private", "shared", "community"]},
            "min_disk": {"type": "integer", "minimum": 0},
            "min_ram": {"type": "integer", "minimum": 0},
            "project": _PROJECT,
            "properties": {"type": "object", "additionalProperties": {"type": "string"}}})),
        "networks": _list(_obj({
            "name": _NAME, "project": _PROJECT, "shared": {"type": "boolean"},
            "external": {"type": "boolean"}, "mtu": {"type": "integer", "minimum": 68},
            "subnets": _list(_SUBNET)})),
        "routers": _list(_obj({
            "name": _NAME, "project": _PROJECT, "external_gateway": _NAME,
            "interfaces": _list(_NAME)})),
        "security_groups": _list(_obj({
            "name": _NAME, "project": _PROJECT, "description": _TEXT,
            "rules": _list(_RULE)})),
        "keypairs": _list(_obj({
            "name": _NAME, "user": _NAME, "public_key": {"type": "string", "maxLength": 16384},
            "public_key_file": {"type": "string", "maxLength": 4096}}, ("name",))),
        "quotas": _list(_obj({"project": _PROJECT, "compute": _QUOTA, "network": _QUOTA,
                              "volume": _QUOTA}, ("project",))),
    },
}
_VALIDATOR = Draft7Validator(SEED_SCHEMA)


class SeedError(Exception):
    """The seed file is unusable, or applying it failed (the message says where)."""


def parse_seed(text: str, source: str = "seed") -> dict[str, Any]:
    """The checked seed document of ``text`` (empty document: nothing to do)."""
    if len(text.encode()) > MAX_BYTES:
        raise SeedError(f"{source}: larger than {MAX_BYTES} bytes")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SeedError(f"{source}: not YAML: {exc}") from exc
    if doc is None:
        return {}
    errors = sorted(_VALIDATOR.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(top)"
        raise SeedError(f"{source}: {where}: {err.message}")
    return dict(doc)


def load_seed(path: Path) -> dict[str, Any]:
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise SeedError(f"{path}: larger than {MAX_BYTES} bytes")
        return parse_seed(path.read_text(), str(path))
    except OSError as exc:
        raise SeedError(f"{path}: {exc.strerror or exc}") from exc
