"""Request validation helpers for the compute API (400 ``badRequest`` on bad input)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import re
from typing import TYPE_CHECKING, Any

from onestack.common.errors import BadRequest, ValidationError
from onestack.common.timeutils import parse_isotime

if TYPE_CHECKING:
    from onestack.compute.microversions import APIVersion

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                   r"[0-9a-fA-F]{12}$")
TAG_RE = re.compile(r"^[^,/]{1,60}$")
KEYPAIR_NAME = re.compile(r"^[a-zA-Z0-9 _.@-]+$")


def obj(body: Any, key: str) -> dict[str, Any]:
    """``body[key]`` as an object (400 when the body does not have that shape)."""
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise ValidationError(f"Invalid input for field/attribute {key}. Value: {body}. "
                              f"'{key}' is a required property")
    return body[key]


def is_uuid(value: Any) -> bool:
    return isinstance(value, str) and bool(_UUID.match(value))


def name(value: Any, field: str = "name", allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"Invalid input for field/attribute {field}. Value: {value}. "
                              f"{value!r} is not of type 'string'")
    if len(value) > 255:
        raise ValidationError(f"Invalid input for field/attribute {field}. Value: {value}. "
                              "is too long")
    if not allow_empty and not value.strip():
        raise ValidationError(f"Invalid input for field/attribute {field}. Value: {value}. "
                              "should be non-empty")
    return value


def integer(value: Any, field: str, minimum: int | None = None,
            maximum: int | None = None) -> int:
    if isinstance(value, bool):
        raise ValidationError(f"Invalid input for field/attribute {field}. Value: {value}.")
    try:
        n = int(value) if isinstance(value, int | str) else None
    except ValueError:
        n = None
    if n is None or (isinstance(value, str) and not value.strip().lstrip("-").isdigit()):
        raise ValidationError(f"Invalid input for field/attribute {field}. Value: {value}. "
                              f"{value!r} is not of type 'integer'")
    if minimum is not None and n < minimum:
        raise ValidationError(f"Invalid input for field/attribute {field}. Value: {value}. "
                              f"{value} is less than the minimum of {minimum}")
    if maximum is not None and n > maximum:
        raise ValidationError(f"Invalid input for field/attribute {field}. Value: {value}. "
                              f"{value} is greater than the maximum of {maximum}")
    return n


def boolean(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0",
                                                     "no", "off"):
        return value.lower() in ("true", "1", "yes", "on")
    raise ValidationError(f"Invalid input for field/attribute {field}. Value: {value}. "
                          f"{value!r} is not of type 'boolean'")


def metadata(value: Any, field: str = "metadata") -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValidationError(f"Invalid input for field/attribute {field}. Value: {value}. "
                              f"{value!r} is not of type 'object'")
    for k, v in value.items():
        if not isinstance(k, str) or not 1 <= len(k) <= 255:
            raise ValidationError(f"Invalid input for field/attribute {field}. Value: {value}."
                                  " Additional properties are not allowed")
        if not isinstance(v, str) or len(v) > 255:
            raise ValidationError(f"Invalid input for field/attribute {k}. Value: {v}. "
                                  f"{v!r} is not of type 'string'")
    return dict(value)


def ref_id(value: Any, field: str) -> str:
    """An id given directly or as the last segment of a URL (imageRef, flavorRef)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"Invalid input for field/attribute {field}. Value: {value}.")
    return value.rstrip("/").rsplit("/", 1)[-1]


def user_data(value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError("Invalid input for field/attribute user_data.")
    if len(value) > 65535:
        raise ValidationError("Invalid input for field/attribute user_data. Value is too long")
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("User data needs to be valid base 64.") from None
    return value


def tags(value: Any, field: str = "tags") -> list[str]:
    if not isinstance(value, list) or len(value) > 50:
        raise ValidationError(f"Invalid input for field/attribute {field}. Value: {value}.")
    for t in value:
        tag(t)
    return list(dict.fromkeys(value))


def tag(value: Any) -> str:
    if not isinstance(value, str) or not TAG_RE.match(value):
        raise ValidationError(f"Invalid input for field/attribute tag. Value: {value}.")
    return value


#: The JSON-schema formats of IP addresses and the class that parses each.
_ADDRESS_FORMATS: dict[str, type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address]] = {
    "ipv4": ipaddress.IPv4Address, "ipv6": ipaddress.IPv6Address}


def _address(value: Any, field: str, fmt: str) -> str:
    """``value`` as the text of an address of format ``fmt`` (400 when it is not one)."""
    try:
        return str(_ADDRESS_FORMATS[fmt](value))
    except (ValueError, TypeError):
        raise ValidationError(f"Invalid input for field/attribute {field}. Value: {value}. "
                              f"{value!r} is not a '{fmt}'") from None


def ipv4(value: Any, field: str) -> str:
    return _address(value, field, "ipv4")


def ipv6(value: Any, field: str) -> str:
    return _address(value, field, "ipv6")


def only(doc: dict[str, Any], allowed: set[str], field: str) -> None:
    extra = set(doc) - allowed
    if extra:
        raise ValidationError(f"Invalid input for field/attribute {field}. Additional "
                              f"properties are not allowed ({', '.join(sorted(extra))} "
                              "were unexpected)")


def only_as_of(doc: dict[str, Any], version: APIVersion, allowed: set[str],
               added: dict[str, str], field: str) -> None:
    """``only`` for a body whose keys grew with the microversion: ``allowed`` always, and
    each key of ``added`` from the microversion it maps to on."""
    only(doc, allowed | {key for key, since in added.items() if version >= since}, field)


#: Nova's ``parameter_types.hostname``: what a compute host name may look like.
HOSTNAME = re.compile(r"^[a-zA-Z0-9-._]{1,255}$")
#: Nova's ``parameter_types.boolean``: JSON booleans and these strings.
BOOLEAN_STRINGS = frozenset({"True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes",
                             "yes", "False", "FALSE", "false", "0", "OFF", "Off", "off",
                             "NO", "No", "no"})


def host_or_null(value: Any, field: str = "host") -> str | None:
    """A compute host name or ``null`` (Nova's ``hostname`` type, nullable)."""
    if value is None:
        return None
    if not isinstance(value, str) or not HOSTNAME.match(value):
        raise ValidationError(f"Invalid input for field/attribute {field}. Value: {value}. "
                              f"{value!r} is not a valid host name")
    return value


def strict_boolean(value: Any, field: str, extra: tuple[str, ...] = ()) -> bool | str:
    """Nova's ``parameter_types.boolean`` (plus ``extra`` literal strings, e.g. ``auto``)."""
    if isinstance(value, bool) or (isinstance(value, str)
                                   and (value in BOOLEAN_STRINGS or value in extra)):
        return value
    raise ValidationError(f"Invalid input for field/attribute {field}. Value: {value}. "
                          f"{value!r} is not one of the allowed values")


def live_migrate(args: Any, version: Any) -> str | None:
    """Validate an ``os-migrateLive`` body as Nova's schema of that microversion does
    (before 2.25: ``block_migration``, ``disk_over_commit`` and ``host`` required;
    2.25: ``disk_over_commit`` gone, ``block_migration`` may be ``auto``; 2.30-2.67: an
    optional ``force``; no other keys). Returns the requested host (None: scheduler's
    choice)."""
    if not isinstance(args, dict):
        raise ValidationError(f"Invalid input for field/attribute os-migrateLive. Value: "
                              f"{args}. {args!r} is not of type 'object'")
    if version >= "2.25":
        required = ["block_migration", "host"]
        allowed = {"block_migration", "host"}
        if version >= "2.30" and version < "2.68":
            allowed.add("force")
    else:
        required = ["block_migration", "disk_over_commit", "host"]
        allowed = {"block_migration", "disk_over_commit", "host"}
    for key in required:
        if key not in args:
            raise ValidationError(f"Invalid input for field/attribute os-migrateLive. Value: "
                                  f"{args}. '{key}' is a required property")
    only(args, allowed, "os-migrateLive")
    strict_boolean(args["block_migration"], "block_migration",
                   ("auto",) if version >= "2.25" else ())
    for key in ("disk_over_commit", "force"):
        if key in args:
            strict_boolean(args[key], key)
    return host_or_null(args["host"])


def time_filter(value: str, field: str) -> dt.datetime:
    """A ``changes-since``/``changes-before`` query value (400 when not a time)."""
    try:
        return parse_isotime(value)
    except ValueError:
        raise BadRequest(f"Invalid filter field: {field}.") from None
