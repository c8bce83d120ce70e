"""Access-rule enforcement at each service's door (what keystonemiddleware's ``auth_token``
does for every OpenStack service, and Keystone for its own API).

``ApiMiddleware`` asks the ``AccessGate`` of its service about every request whose token
carries application-credential access rules (``RequestContext.access_rules``). The request
is checked with the service's own type, its method and its path as the client sent it (before
any rewriting: compute's ``/v2.1/{project_id}/…`` stays as it was, a trailing slash is kept).
Routes the service serves without a token (version documents, health check, token issue)
stay open to it; anything else no rule matches is refused with 401, as an invalid token is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

from starlette.routing import BaseRoute, Route
from starlette.types import Scope

from onestack.common.context import RequestContext
from onestack.common.errors import Unauthorized

#: Set on handlers' ASGI endpoints by ``onestack.api.app.endpoint`` for token-less routes.
PUBLIC_ATTR = "onestack_public"

AUTH_REQUIRED = "The request you have made requires authentication."


def request_path(scope: Scope) -> str:
    """The request path as the client sent it: ``raw_path`` (ASGI servers keep it as
    received; inner layers rewrite ``path``) percent-decoded like ``path``, under the app's
    ``root_path`` (keystonemiddleware's ``SCRIPT_NAME + PATH_INFO``)."""
    raw = scope.get("raw_path")
    if isinstance(raw, bytes | bytearray):
        path = bytes(raw).split(b"?", 1)[0].decode("latin-1")
        if "%" in path:
            path = unquote(path)
    else:
        path = scope["path"]
    root = str(scope.get("root_path") or "")
    return path if not root or path.startswith(root) else root + path


class AccessGate:
    """Checks requests made with access-rule-limited tokens against those rules."""

    def __init__(self, service_type: str, routes: Iterable[BaseRoute]) -> None:
        self.service_type = service_type
        self._public: list[tuple[re.Pattern[str], frozenset[str]]] = [
            (r.path_regex, frozenset(r.methods or ()))
            for r in routes
            if isinstance(r, Route) and getattr(r.endpoint, PUBLIC_ATTR, False)
        ]

    def _public_route(self, scope: Scope) -> bool:
        path, method = scope["path"], scope["method"]
        return any(method in methods and regex.match(path)
                   for regex, methods in self._public)

    def check(self, scope: Scope, ctx: RequestContext) -> None:
        """Raise ``Unauthorized`` when ``ctx``'s access rules do not allow this request."""
        rules = ctx.access_rules
        if rules is None or self._public_route(scope):
            return
        if not rules.allows(self.service_type, scope["method"], request_path(scope)):
            raise Unauthorized(AUTH_REQUIRED)
