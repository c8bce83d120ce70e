"""Request validation for the identity API (JSON Schema, checked with ``jsonschema``)."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError as SchemaError

from onestack.common.errors import ValidationError

_name = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"[\S]+"}
_short_name = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"[\S]+"}
_id = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[a-zA-Z0-9-_]+$"}
_nullable_id = {"type": ["string", "null"], "minLength": 1, "maxLength": 64,
                "pattern": r"^[a-zA-Z0-9-_]+$"}
_description = {"type": ["string", "null"]}
_enabled = {"type": "boolean"}
_tag = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[^,/]*$"}
_tags = {"type": "array", "items": _tag, "maxItems": 80, "uniqueItems": True}
_options_user = {
    "type": "object",
    "properties": {
        "ignore_change_password_upon_first_use": {"type": ["boolean", "null"]},
        "ignore_password_expiry": {"type": ["boolean", "null"]},
        "ignore_lockout_failure_attempts": {"type": ["boolean", "null"]},
        "lock_password": {"type": ["boolean", "null"]},
        "ignore_user_inactivity": {"type": ["boolean", "null"]},
        "multi_factor_auth_rules": {"type": ["array", "null"]},
        "multi_factor_auth_enabled": {"type": ["boolean", "null"]},
    },
    "additionalProperties": False,
}
_options_role = {
    "type": "object",
    "properties": {"immutable": {"type": ["boolean", "null"]}},
    "additionalProperties": False,
}
_options_project = _options_role


def _obj(props: dict[str, Any], required: list[str] | None = None, extra: bool = True,
         min_props: int = 0) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props,
                              "additionalProperties": extra}
    if required:
        schema["required"] = required
    if min_props:
        schema["minProperties"] = min_props
    return schema


DOMAIN_CREATE = _obj({"name": _short_name, "description": _description, "enabled": _enabled,
                      "id": _id, "tags": _tags, "options": {"type": "object"}}, ["name"])
DOMAIN_UPDATE = _obj({"name": _short_name, "description": _description, "enabled": _enabled,
                      "tags": _tags, "options": {"type": "object"}}, min_props=1)

PROJECT_CREATE = _obj({
    "name": _short_name, "description": _description, "enabled": _enabled,
    "domain_id": _nullable_id, "parent_id": _nullable_id, "is_domain": {"type": "boolean"},
    "tags": _tags, "options": _options_project,
}, ["name"])
PROJECT_UPDATE = _obj({
    "name": _short_name, "description": _description, "enabled": _enabled,
    "domain_id": _nullable_id, "parent_id": _nullable_id, "is_domain": {"type": "boolean"},
    "tags": _tags, "options": _options_project,
}, min_props=1)
TAGS_PUT = _obj({"tags": _tags}, ["tags"], extra=False)

USER_CREATE = _obj({
    "name": _name, "domain_id": _nullable_id, "password": {"type": ["string", "null"]},
    "enabled": _enabled, "default_project_id": _nullable_id, "description": _description,
    "email": {"type": ["string", "null"]}, "options": _options_user,
    "federated": {"type": "array"},
}, ["name"])
USER_UPDATE = _obj({
    "name": _name, "domain_id": _nullable_id, "password": {"type": ["string", "null"]},
    "enabled": _enabled, "default_project_id": _nullable_id, "description": _description,
    "email": {"type": ["string", "null"]}, "options": _options_user,
}, min_props=1)
PASSWORD_CHANGE = _obj({"password": {"type": "string"},
                        "original_password": {"type": "string"}},
                       ["password", "original_password"], extra=False)

GROUP_CREATE = _obj({"name": _short_name, "domain_id": _nullable_id,
                     "description": _description}, ["name"])
GROUP_UPDATE = _obj({"name": _short_name, "domain_id": _nullable_id,
                     "description": _description}, min_props=1)

ROLE_CREATE = _obj({"name": _name, "domain_id": _nullable_id, "description": _description,
                    "options": _options_role}, ["name"])
ROLE_UPDATE = _obj({"name": _name, "domain_id": _nullable_id, "description": _description,
                    "options": _options_role}, min_props=1)

REGION_CREATE = _obj({"id": {"type": "string", "minLength": 1, "maxLength": 255},
                      "description": _description,
                      "parent_region_id": {"type": ["string", "null"]}})
REGION_UPDATE = _obj({"description": _description,
                      "parent_region_id": {"type": ["string", "null"]}}, min_props=1)

SERVICE_CREATE = _obj({"type": {"type": "string", "minLength": 1, "maxLength": 255},
                       "name": {"type": ["string", "null"], "maxLength": 255},
                       "description": _description, "enabled": _enabled}, ["type"])
SERVICE_UPDATE = _obj({"type": {"type": "string", "minLength": 1, "maxLength": 255},
                       "name": {"type": ["string", "null"], "maxLength": 255},
                       "description": _description, "enabled": _enabled}, min_props=1)

_interface = {"type": "string", "enum": ["admin", "internal", "public"]}
_url = {"type": "string", "minLength": 0, "maxLength": 225,
        "pattern": r"^[a-zA-Z0-9+.-]+:.+"}
ENDPOINT_CREATE = _obj({
    "enabled": _enabled, "interface": _interface, "region_id": {"type": ["string", "null"]},
    "region": {"type": ["string", "null"]}, "service_id": {"type": "string"}, "url": _url,
}, ["service_id", "interface", "url"])
ENDPOINT_UPDATE = _obj({
    "enabled": _enabled, "interface": _interface, "region_id": {"type": ["string", "null"]},
    "region": {"type": ["string", "null"]}, "service_id": {"type": "string"}, "url": _url,
}, min_props=1)

_role_ref = {"type": "object", "properties": {"id": {"type": "string"},
                                              "name": {"type": "string"}},
             "minProperties": 1, "additionalProperties": False}
_access_rule = {
    "type": "object",
    "properties": {
        # Lengths as Keystone's (and the columns'): ids and service types are id strings.
        "id": {"type": "string", "minLength": 1, "maxLength": 64},
        "path": {"type": "string", "minLength": 1, "maxLength": 225, "pattern": "^/"},
        "method": {"type": "string", "enum": ["POST", "GET", "HEAD", "PATCH", "PUT", "DELETE"]},
        "service": {"type": "string", "minLength": 1, "maxLength": 64},
    },
    "additionalProperties": False,
}
APP_CRED_CREATE = _obj({
    "name": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": _description,
    "secret": {"type": ["string", "null"], "minLength": 1},
    "expires_at": {"type": ["string", "null"]},
    "roles": {"type": "array", "items": _role_ref},
    "unrestricted": {"type": ["boolean", "null"]},
    "access_rules": {"type": "array", "items": _access_rule},
    "system": {"type": ["string", "null"]},
}, ["name"], extra=False)

CREDENTIAL_CREATE = _obj({"blob": {"type": "string"}, "project_id": {"type": ["string", "null"]},
                          "type": {"type": "string", "minLength": 1, "maxLength": 255},
                          "user_id": {"type": "string", "minLength": 1, "maxLength": 64},
                          "id": {"type": "string"}},
                         ["blob", "type", "user_id"])
CREDENTIAL_UPDATE = _obj({"blob": {"type": "string"}, "project_id": {"type": ["string", "null"]},
                          "type": {"type": "string", "minLength": 1, "maxLength": 255},
                          "user_id": {"type": "string", "minLength": 1, "maxLength": 64}},
                         min_props=1)

_validators: dict[int, Draft7Validator] = {}


def validate(schema: dict[str, Any], data: Any, what: str) -> dict[str, Any]:
    """Validate ``data`` (the inner object of ``{what: …}``); 400 with the first problem."""
    if not isinstance(data, dict):
        raise ValidationError(f"Expecting to find {what} in request body.")
    validator = _validators.get(id(schema))
    if validator is None:
        validator = _validators[id(schema)] = Draft7Validator(schema)
    error: SchemaError | None = next(iter(validator.iter_errors(data)), None)
    if error is not None:
        field = ".".join(str(p) for p in error.absolute_path) or what
        raise ValidationError(f"Invalid input for field '{field}': {error.message}")
    return data


def body_of(body: Any, key: str) -> Any:
    if not isinstance(body, dict) or key not in body:
        raise ValidationError(f"Expecting to find {key} in request body.")
    return body[key]
