"""What the identity API's route handlers share (``api_tokens.py``, ``api_projects.py``,
``api_users.py``, ``api_credentials.py``, ``api_roles.py``, ``api_catalog.py``): the manager
and token service of the ``IdentityAPI`` that builds them, Keystone's constants and fault
shape, and the small helpers several resources use."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import Any

from onestack.api.app import ApiRequest
from onestack.common.errors import APIError, NotFound, ValidationError
from onestack.common.timeutils import parse_isotime
from onestack.identity import schemas
from onestack.identity.auth import TokenService
from onestack.identity.manager import IdentityManager

VERSION_ID = "v3.14"
VERSION_UPDATED = "2020-04-07T00:00:00Z"
#: ``OpenStack-Identity-Access-Rules`` version a validator must declare to see tokens that
#: carry access rules (Keystone's ``ACCESS_RULES_MIN_VERSION``).
ACCESS_RULES_MIN_VERSION = 1.0
MEDIA = [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]


def keystone_fault(err: APIError) -> tuple[dict[str, Any], str]:
    """Keystone's ``{"error": {"code", "title", "message"}}``."""
    return ({"error": {"code": err.status, "title": err.title, "message": err.message}},
            "application/json")


async def _body(req: ApiRequest, schema: dict[str, Any], key: str) -> dict[str, Any]:
    """The object of the request's ``{key: {...}}`` body, checked against ``schema`` (400
    naming the first problem)."""
    return schemas.validate(schema, schemas.body_of(await req.json(), key), key)


def _changes(body: dict[str, Any], fields: Collection[str]) -> dict[str, Any]:
    """An update's changes: the body's ``fields`` as they are, the rest of it (when there is
    any) under ``extra``."""
    changes = {k: v for k, v in body.items() if k in fields}
    extra = {k: v for k, v in body.items() if k not in changes}
    if extra:
        changes["extra"] = extra
    return changes


def _expires_at(body: dict[str, Any]) -> dt.datetime | None:
    """The body's ``expires_at`` time (None when it has none; 400 when it is not one)."""
    if not body.get("expires_at"):
        return None
    try:
        return parse_isotime(body["expires_at"])
    except ValueError as exc:
        raise ValidationError("Invalid input for field 'expires_at'.") from exc


def _bool(value: str | None, name: str) -> bool | None:
    if value is None:
        return None
    low = value.lower()
    if low in ("true", "1", "yes", "on", ""):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    raise ValidationError(f"Invalid value for {name}: {value}")


def _flag(req: ApiRequest, name: str) -> bool:
    """Keystone's query flags: present (any value but false/0) means on."""
    if not req.request.scope.get("query_string") or name not in req.query:
        return False
    return _bool(req.query.get(name), name) is not False


class IdentityHandler:
    """Base of one resource's route handlers (built by ``IdentityAPI``)."""

    def __init__(self, manager: IdentityManager, tokens: TokenService) -> None:
        self.m = manager
        self.tokens = tokens

    # ------------------------------------------------------------------ helpers
    def _scope_domain(self, req: ApiRequest, explicit: str | None) -> str:
        if explicit:
            return explicit
        if req.ctx.domain_id:
            return req.ctx.domain_id
        return "default"

    def _role_names(self, ids: list[str]) -> list[dict[str, Any]]:
        out = []
        for rid in ids:
            try:
                r = self.m.get_role(rid)
                out.append({"id": r.id, "name": r.name,
                            "domain_id": None if r.domain_id == "<<null>>" else r.domain_id})
            except NotFound:
                continue
        return out
