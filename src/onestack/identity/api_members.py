"""The member routes identity's simpler resources share.

Regions, services, endpoints, policies, OAuth1 consumers, endpoint groups and (registered)
limits each answer ``GET``, ``PATCH`` and ``DELETE`` on ``/v3/<collection>/{id}`` the same
way: enforce ``identity:<verb>_<resource>``, call the manager with the path's id (and, for
``PATCH``, the changes of a schema-checked ``{key: {...}}`` body), answer ``{key: view}``
(or 204). A handler describes each such resource once as a ``Member``; ``add_members``
turns the descriptions into routes. What a resource does differently stays a handler method
of its own (``@serves``), and its ``Member`` leaves that verb out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from onestack.api.app import ApiRequest, Service, route
from onestack.identity.api_base import _body

View = Callable[[str, Any], dict[str, Any]]


def body_as_is(body: dict[str, Any], member_id: str) -> dict[str, Any]:
    """An update's changes when the manager takes the checked body as it is."""
    return body


@dataclass(frozen=True)
class Member:
    """One resource's member routes on ``path`` (whose last segment is the id parameter):
    the document ``key``, the ``view(base_url, record)`` of it and the manager calls serving
    each verb (None: the verb is not routed here)."""

    path: str
    key: str
    view: View
    get: Callable[[str], Any] | None = None
    update: Callable[[str, dict[str, Any]], Any] | None = None
    delete: Callable[[str], Any] | None = None
    #: The schema a ``PATCH`` body's object is checked against.
    update_schema: dict[str, Any] | None = None
    #: ``changes(body, id)``: what ``update`` gets from the checked body (may raise a 400).
    changes: Callable[[dict[str, Any], str], dict[str, Any]] = body_as_is
    #: The resource's part of the policy names (default: ``key``).
    policy: str | None = None

    @property
    def param(self) -> str:
        """The name of the path's id parameter."""
        return self.path.rsplit("{", 1)[1].rstrip("}")

    def rule(self, verb: str) -> str:
        return f"identity:{verb}_{self.policy or self.key}"


class HasMembers(Protocol):
    """A route handler that describes some of its resources as ``Member``s."""

    def members(self) -> tuple[Member, ...]: ...


class MemberRoutes:
    """The handlers of one ``Member``'s routes."""

    def __init__(self, member: Member) -> None:
        self.m = member

    async def show(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce(self.m.rule("get"))
        assert self.m.get is not None  # routed only when there is one
        record = await req.run(self.m.get, req.param(self.m.param))
        return {self.m.key: self.m.view(req.base_url, record)}

    async def update(self, req: ApiRequest) -> dict[str, Any]:
        req.enforce(self.m.rule("update"))
        assert self.m.update is not None and self.m.update_schema is not None
        body = await _body(req, self.m.update_schema, self.m.key)
        member_id = req.param(self.m.param)
        record = await req.run(self.m.update, member_id, self.m.changes(body, member_id))
        return {self.m.key: self.m.view(req.base_url, record)}

    async def delete(self, req: ApiRequest) -> None:
        req.enforce(self.m.rule("delete"))
        assert self.m.delete is not None
        await req.run(self.m.delete, req.param(self.m.param))


def add_members(service: Service, *handlers: HasMembers) -> None:
    """Add the routes of each ``Member`` of ``handlers`` to ``service``."""
    for handler in handlers:
        for member in handler.members():
            routes = MemberRoutes(member)
            for verb, method, fn in (("GET", member.get, routes.show),
                                     ("PATCH", member.update, routes.update),
                                     ("DELETE", member.delete, routes.delete)):
                if method is not None:
                    service.routes.append(route(service, member.path, fn, (verb,)))
