"""Placement's error codes (the ``code`` of its fault body, microversion 1.23+).

Errors are the shared ``onestack.common.errors`` classes with ``kind`` set to the code, so the
fault formatter can render them and in-process callers can test ``err.kind``.
"""

from __future__ import annotations

from onestack.common.errors import BadRequest, Conflict, NotFound

DEFAULT = "placement.undefined_code"
CONCURRENT_UPDATE = "placement.concurrent_update"
DUPLICATE_NAME = "placement.duplicate_name"
INVENTORY_INUSE = "placement.inventory.inuse"
PROVIDER_INUSE = "placement.resource_provider.inuse"
PROVIDER_CANNOT_DELETE_PARENT = "placement.resource_provider.cannot_delete_parent"
PROVIDER_NOT_FOUND = "placement.resource_provider.not_found"
QUERY_DUPLICATE_KEY = "placement.query.duplicate_key"
QUERY_BAD_VALUE = "placement.query.bad_value"
QUERY_MISSING_VALUE = "placement.query.missing_value"


def bad_request(message: str, code: str = DEFAULT) -> BadRequest:
    return BadRequest(message, kind=code)


def conflict(message: str, code: str = DEFAULT) -> Conflict:
    return Conflict(message, kind=code)


def concurrent_update(message: str) -> Conflict:
    """The generation a caller sent is stale: re-read and retry."""
    return Conflict(message, kind=CONCURRENT_UPDATE)


def not_found(message: str, code: str = DEFAULT) -> NotFound:
    return NotFound(message, kind=code)


def code_of(kind: str) -> str:
    """The Placement error code for an error's ``kind``."""
    return kind if kind.startswith("placement.") else DEFAULT
