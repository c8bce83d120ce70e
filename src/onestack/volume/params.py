"""Input checks shared by the volume API's route modules: each raises Cinder's 400."""

from __future__ import annotations

from typing import Any

from onestack.common.errors import BadRequest

_MAX_STR = 255


def _obj(body: Any, key: str) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise BadRequest(f"Missing required element '{key}' in request body.")
    return body[key]


def _text(value: Any, field: str, nullable: bool = True) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"Invalid input for field/attribute {field}. Value: {value}. "
                         f"{value!r} is not of type 'string'")
    if len(value) > _MAX_STR:
        raise BadRequest(f"Invalid input for field/attribute {field}. Value: {value}. "
                         f"'{value[:40]}...' is too long")
    return value


def _size(value: Any, field: str = "size") -> int:
    if isinstance(value, bool):
        raise BadRequest(f"Invalid input for field/attribute {field}. Value: {value}.")
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        raise BadRequest(f"Invalid input for field/attribute {field}. Value: {value}. "
                         f"{value!r} is not a valid integer") from None
    if n < 1 or n > 2**31 - 1:
        raise BadRequest(f"Invalid input for field/attribute {field}. Value: {value}. "
                         f"{value} must be an integer and greater than 0.")
    return n


def _metadata(value: Any, field: str = "metadata") -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 128:
        raise BadRequest(f"Invalid input for field/attribute {field}. Value: {value}.")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k or len(k) > _MAX_STR:
            raise BadRequest(f"Invalid input for field/attribute {field}: metadata keys are "
                             "strings of 1-255 characters.")
        if not isinstance(v, str) or len(v) > _MAX_STR:
            raise BadRequest(f"Invalid input for field/attribute {field}: metadata values "
                             "are strings of at most 255 characters.")
        out[k] = v
    return out


def _action_body(body: Any, what: str) -> dict[str, Any]:
    """A ``POST …/{id}/action`` body: an object naming exactly one action (400 otherwise;
    ``what`` is "volume" or "snapshot")."""
    if not isinstance(body, dict) or len(body) != 1:
        raise BadRequest(f"There is no such action: a {what} action body names exactly one "
                         "action.")
    return body


def _one_item(value: Any, key: str, field: str) -> dict[str, str]:
    """The body of a ``PUT …/{key}`` of metadata or specs: ``{key: value}`` for the URI's
    own ``key`` (400 for anything else)."""
    item = _metadata(value, field)
    if list(item) != [key]:
        raise BadRequest("Request body and URI mismatch")
    return item


def _bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes",
                                                             "no", "on", "off", "y", "n"):
        return value.strip().lower() in ("true", "1", "yes", "on", "y")
    raise BadRequest(f"Invalid input for field/attribute {field}. Value: {value}. "
                     f"{value!r} is not a valid boolean")




def _updates(body: dict[str, Any], what: str) -> dict[str, Any]:
    """The name, description (or their ``display_`` aliases) and metadata a volume or
    snapshot update sets; 400 when it sets none."""
    changes: dict[str, Any] = {}
    for key, alias in (("name", "display_name"), ("description", "display_description")):
        if key in body or alias in body:
            changes[key] = _text(body.get(key, body.get(alias)), key)
    if "metadata" in body:
        changes["metadata"] = _metadata(body["metadata"])
    if not changes:
        raise BadRequest(f"Invalid input received: a {what} update needs a name, a "
                         "description or metadata.")
    return changes



def type_changes(body: dict[str, Any]) -> dict[str, Any]:
    """The changes a volume type or group type update asks for: ``name`` (not null),
    ``description``, ``is_public``."""
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = _text(body["name"], "name", nullable=False)
    if "description" in body:
        changes["description"] = _text(body["description"], "description")
    if "is_public" in body:
        changes["is_public"] = _bool(body["is_public"], "is_public")
    return changes
