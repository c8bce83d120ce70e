"""ASGI application factory shared by every service.

A service is a list of ``Route``s plus a ``FaultFormatter``. Handlers are ``async def
handler(req: ApiRequest) -> Response | dict``; they parse, call a manager (``await
req.run(fn, ...)`` runs blocking work in a thread) and shape the result. Any ``APIError``
becomes the service's own fault body; any other exception becomes a 500 in that body (and is
logged), never a traceback.

Middleware is pure ASGI (no per-request task switching): request id, injected faults (when a
fault table is installed, ``onestack.faults``), body size limit and token authentication, which
puts a ``RequestContext`` on ``scope["onestack.ctx"]`` and holds tokens limited by
application-credential access rules to them (``onestack.api.access``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onestack.api.access import PUBLIC_ATTR, AccessGate
from onestack.api.body import parse_json
from onestack.api.params import check_path, check_query
from onestack.api.policy import Policy
from onestack.api.routes import declared, order_routes
from onestack.common.context import RequestContext
from onestack.common.errors import (
    APIError,
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)

LOG = logging.getLogger(__name__)

CTX_KEY = "onestack.ctx"
#: onestack's own (non-OpenStack) API paths: fault injection, health.
CONTROL_PREFIX = "/_onestack/"


class FaultFormatter(Protocol):
    """Renders an ``APIError`` as the service's fault body."""

    def __call__(self, err: APIError) -> tuple[dict[str, Any] | str, str]: ...


class TokenValidator(Protocol):
    """Turns an ``X-Auth-Token`` into a request context (raises ``Unauthorized``)."""

    async def context_for(self, token: str, request_id: str) -> RequestContext: ...


def url_header(url: str) -> str:
    """``url`` as a header value (``Location``): characters beyond ASCII in a path segment a
    user named (a tag, say) are percent-encoded as UTF-8, never a rendering failure."""
    return quote(url, safe=":/?#[]@!$&'()*+,;=%~")


def json_bytes(data: Any) -> bytes:
    """Compact UTF-8 JSON (orjson: several times faster than the standard library)."""
    return orjson.dumps(data)


class FastJSON(JSONResponse):
    """JSON response without indentation or ASCII escaping (what the services send)."""

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


@dataclass
class Service:
    """What a service contributes to the app factory."""

    name: str
    routes: list[Route]
    fault: FaultFormatter
    policy: Policy
    public_paths: Sequence[str] = ()
    #: Regexes of paths reachable without a token (version documents, auth, healthcheck).
    state: dict[str, Any] = field(default_factory=dict)
    request_id_header: str = "x-openstack-request-id"
    auth_uri: str = ""
    #: Run before every authenticated handler (raises an ``APIError`` to refuse the
    #: request), e.g. compute's check of the project id in old-style URLs.
    request_check: Callable[[ApiRequest], None] | None = None
    #: The catalog type access rules name this service by (default: ``name``).
    service_type: str = ""


class ApiRequest:
    """A request as handlers see it."""

    __slots__ = ("request", "ctx", "service", "_body")

    def __init__(self, request: Request, ctx: RequestContext, service: Service) -> None:
        self.request = request
        self.ctx = ctx
        self.service = service
        self._body: Any = _UNSET

    @property
    def path_params(self) -> Mapping[str, Any]:
        return self.request.path_params

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    @property
    def query(self) -> Any:
        return self.request.query_params

    @property
    def headers(self) -> Any:
        return self.request.headers

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def base_url(self) -> str:
        """Scheme://host[:port] the client used, for links."""
        return str(self.request.base_url).rstrip("/")

    @property
    def state(self) -> dict[str, Any]:
        return self.service.state

    async def json(self, required: bool = True) -> Any:
        """The parsed JSON body (400 when malformed, 415 for a wrong content type).

        Parsed and checked by :func:`onestack.api.body.parse_json` (bounded depth, well-formed
        Unicode, numbers within 64 bits), the one body parser of every service.
        """
        if self._body is not _UNSET:
            return self._body
        raw = await self.request.body()
        ctype = self.request.headers.get("content-type", "")
        if not raw.strip():
            if required:
                raise BadRequest("The request body is empty; a JSON document is required.")
            self._body = None
            return None
        if ctype and "json" not in ctype and "text/plain" not in ctype:
            raise UnsupportedMediaType(f"Unsupported Content-Type: {ctype}")
        self._body = parse_json(raw)
        return self._body

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run blocking work (database, bcrypt) in the thread pool."""
        return await run_blocking(fn, *args, **kwargs)

    def enforce(self, action: str, target: Mapping[str, Any] | None = None) -> None:
        self.service.policy.enforce(action, self.ctx.policy_creds(), target or {})

    def allowed(self, action: str, target: Mapping[str, Any] | None = None) -> bool:
        return self.service.policy.check(action, self.ctx.policy_creds(), target or {})


_UNSET = object()


async def run_blocking(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` in the event loop's default executor with the caller's context variables
    (what ``asyncio.to_thread`` does; cheaper per call than anyio's worker threads, which
    matters on hot paths of a few hundred microseconds). ``onestack up`` sizes that
    executor (``cloud.EXECUTOR_THREADS``)."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await loop.run_in_executor(None, call)

Handler = Callable[[ApiRequest], Awaitable[Any]]


def fault_response(service: Service, err: APIError, request_id: str) -> Response:
    body, media = service.fault(err)
    headers = {service.request_id_header: request_id, **err.headers}
    if err.status == 401 and service.auth_uri:
        headers.setdefault("WWW-Authenticate", f'Keystone uri="{service.auth_uri}"')
    if isinstance(body, str):
        return Response(body, status_code=err.status, media_type=media, headers=headers)
    return FastJSON(body, status_code=err.status, headers=headers, media_type=media)


def endpoint(service: Service, handler: Handler, public: bool = False) -> Callable[..., Any]:
    """Wrap a handler: context, auth requirement, error rendering, response shaping."""
    if not inspect.iscoroutinefunction(handler):
        raise TypeError(f"{handler!r} must be async")

    async def asgi_endpoint(request: Request) -> Response:
        ctx: RequestContext = request.scope.get(CTX_KEY) or RequestContext()
        try:
            req = ApiRequest(request, ctx, service)
            if not public:
                if not ctx.authenticated:
                    raise Unauthorized("The request you have made requires authentication.")
                if service.request_check is not None:
                    service.request_check(req)
            if request.path_params:
                check_path(request.path_params)
            if request.scope["query_string"]:
                check_query(request.query_params.multi_items())
            result = await handler(req)
            # Rendered here too: a document that cannot be rendered is a fault body as well.
            if isinstance(result, Response):
                response = result
            elif result is None:
                response = Response(status_code=204)
            else:
                response = FastJSON(result)
        except APIError as err:
            return fault_response(service, err, ctx.request_id)
        except Exception:  # noqa: BLE001 - the fault body, never a traceback
            LOG.exception("unhandled error in %s %s", request.method, request.url.path)
            return fault_response(
                service, APIError("An unexpected error prevented the server from fulfilling "
                                  "your request."), ctx.request_id)
        response.headers.setdefault(service.request_id_header, ctx.request_id)
        return response

    asgi_endpoint.__name__ = handler.__name__
    setattr(asgi_endpoint, PUBLIC_ATTR, public)  # noqa: B010 - read by AccessGate
    return asgi_endpoint


def route(service: Service, path: str, handler: Handler, methods: Sequence[str],
          public: bool = False) -> Route:
    return Route(path, endpoint(service, handler, public), methods=list(methods))


def add_declared(service: Service, *handlers: object) -> None:
    """Add the routes declared with ``@serves`` on each of ``handlers`` (``api/routes.py``)
    to ``service``, handler by handler."""
    for handler in handlers:
        for decl, bound in declared(handler):
            service.routes.append(route(service, decl.path, bound, decl.methods, decl.public))


class InjectedFault(Protocol):
    """What the middleware reads of a matching fault rule (``onestack.faults``)."""

    id: str
    status: int
    message: str
    delay: float


class HttpFaults(Protocol):
    """Fault rules for HTTP requests (``onestack.faults.rules.FaultTable``): the rule a request
    to ``service`` matches, if any, counted as fired."""

    def match_http(self, service: str, method: str, path: str) -> InjectedFault | None: ...


class ApiMiddleware:
    """Request id, body-size limit and token authentication in one pure-ASGI pass.

    ``max_body`` <= 0 disables the limit (services that stream uploads check their own).
    ``faults`` (installed by the composition root, ``install_faults``) makes matching
    requests slow or fail on purpose; paths under ``/_onestack/`` are never faulted.
    """

    faults: HttpFaults | None = None

    def __init__(self, app: ASGIApp, service: Service, validator: TokenValidator | None,
                 max_body: int) -> None:
        self.app = app
        self.service = service
        self.validator = validator
        self.max_body = max_body
        self.access = AccessGate(service.service_type or service.name, service.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = "req-" + str(uuid.uuid4())
        path = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            # OpenStack services accept a trailing slash on any resource path.
            scope["path"] = path.rstrip("/") or "/"
        token = None
        length = None
        for name, value in scope["headers"]:
            if name == b"x-auth-token":
                token = value.decode("latin-1")
            elif name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
        ctx = RequestContext(request_id=request_id)
        scope[CTX_KEY] = ctx
        if self.faults is not None and not path.startswith(CONTROL_PREFIX):
            rule = self.faults.match_http(self.service.name, scope["method"], scope["path"])
            if rule is not None:
                if rule.delay:
                    await asyncio.sleep(rule.delay)
                if rule.status:
                    err = APIError(rule.message or "Injected fault (onestack fault rule "
                                   f"{rule.id}).", status=rule.status)
                    await fault_response(self.service, err, request_id)(scope, receive, send)
                    return
        if length is not None and (length < 0 or 0 < self.max_body < length):
            err = PayloadTooLarge("Request Entity Too Large")
            if length < 0:
                err = BadRequest("Invalid Content-Length header.")
            await fault_response(self.service, err, request_id)(scope, receive, send)
            return
        if token and self.validator is not None:
            try:
                ctx = scope[CTX_KEY] = await self.validator.context_for(token, request_id)
                if ctx.access_rules is not None:
                    self.access.check(scope, ctx)
            except APIError as exc:
                await fault_response(self.service, exc, request_id)(scope, receive, send)
                return
        if length is None and self.max_body > 0:
            receive = _limited_receive(receive, self.max_body)
        try:
            await self.app(scope, receive, send)
        except _BodyTooLarge:
            await fault_response(self.service, PayloadTooLarge("Request Entity Too Large"),
                                 request_id)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _limited_receive(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _BodyTooLarge()
        return message

    return wrapped


async def _not_found(request: Request, exc: Exception) -> Response:
    service: Service = request.app.state.service
    ctx: RequestContext = request.scope.get(CTX_KEY) or RequestContext()
    status = getattr(exc, "status_code", 404)
    err: APIError
    if status == 405:
        err = MethodNotAllowed("The method is not allowed for the requested URL.")
    else:
        err = NotFound("The resource could not be found.")
    return fault_response(service, err, ctx.request_id)


def make_app(service: Service, validator: TokenValidator | None, max_body: int) -> ASGIApp:
    """Build the ASGI app of one service."""
    app = Starlette(routes=order_routes(service.routes),
                    exception_handlers={404: _not_found, 405: _not_found})
    app.state.service = service
    app.router.redirect_slashes = False
    return ApiMiddleware(app, service, validator, max_body)



def find_api_middleware(app: ASGIApp) -> ApiMiddleware | None:
    """The ``ApiMiddleware`` of a service app under its wrappers (version layers), if any."""
    for _ in range(8):
        if isinstance(app, ApiMiddleware):
            return app
        inner = getattr(app, "app", None)
        if inner is None:
            return None
        app = inner
    return None


def install_faults(apps: Mapping[str, ASGIApp], table: HttpFaults | None) -> None:
    """Let ``table``'s HTTP rules act on every service app of ``apps``."""
    for app in apps.values():
        mw = find_api_middleware(app)
        if mw is not None:
            mw.faults = table
