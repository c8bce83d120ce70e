"""The dashboard: a web console for the whole cloud, driving it through its public APIs.

Served by ``onestack up`` on ``dashboard_port`` (default 8080), like Horizon it holds no
state of the cloud: every page is built from the APIs with the logged-in user's token
(``cloud.CloudClient``), every change is an API call. Server-rendered HTML (Jinja2, every
value escaped) with one small script (``static/app.js``: live instance status, upload
progress, topology); no build step. Sessions and CSRF: ``session.py``. Pages: ``pages_*.py``,
put together with this module's routes by ``server.build_dashboard_app``.

Security: sessions in a signed HTTP-only ``SameSite=Lax`` cookie, CSRF token on every form,
``Content-Security-Policy`` allowing scripts and styles from the dashboard only (no inline
script), frames from the console proxy only; API fault messages shown as text.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from onestack import __version__
from onestack.config import Settings
from onestack.dashboard.cloud import ApiFailure, CloudClient, Keystone
from onestack.dashboard.session import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    Session,
    SessionStore,
    csrf_ok,
    load_secret,
)

LOG = logging.getLogger(__name__)

#: Largest form body accepted (uploads stream elsewhere).
MAX_FORM = 1 << 20
Handler = Callable[["Ctx"], Awaitable[Response]]


class Forbidden(Exception):
    """The request may not go on (403 page)."""


class Ctx:
    """One request to a page: the request, its session, the cloud client and form."""

    def __init__(self, dash: Dashboard, request: Request, session: Session) -> None:
        self.dash = dash
        self.request = request
        self.session = session
        self.cloud = CloudClient(dash.http, session)
        self.form: dict[str, list[str]] = {}

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    def field(self, name: str, default: str = "") -> str:
        values = self.form.get(name)
        return values[0].strip() if values else default

    def fields(self, name: str) -> list[str]:
        return [v for v in self.form.get(name, []) if v]

    def render(self, template: str, **values: Any) -> HTMLResponse:
        return self.dash.render(template, self.request, session=self.session, **values)

    def redirect(self, url: str, ok: str = "") -> RedirectResponse:
        if ok:
            self.session.flash("success", ok)
        return RedirectResponse(url, status_code=303)

    def fail(self, url: str, exc: ApiFailure | str) -> RedirectResponse:
        self.session.flash("error", exc.message if isinstance(exc, ApiFailure) else exc)
        return RedirectResponse(url, status_code=303)

    async def act(self, back: str, ok: str, change: Awaitable[object]) -> RedirectResponse:
        """Await ``change`` (calls to the cloud's APIs), then back to the page ``back``
        with the success message ``ok``, or with the API's failure."""
        try:
            await change
        except ApiFailure as exc:
            return self.fail(back, exc)
        return self.redirect(back, ok=ok)


class Dashboard:
    """The dashboard of one cloud (``settings``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.region = settings.region
        self.store = SessionStore(load_secret(settings.data_dir))
        self.console_origin = settings.url("console")
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0),
                                      limits=httpx.Limits(max_connections=200))
        self.keystone = Keystone(self.http, settings.url("identity"))
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("onestack.dashboard", "templates"),
            autoescape=True, undefined=jinja2.StrictUndefined)
        self.static = _load_static()
        self.env.globals.update(version=__version__, asset=self.asset_url)
        self.routes: list[Route] = []

    # ------------------------------------------------------------------ plumbing
    def asset_url(self, name: str) -> str:
        body, _ctype, digest = self.static[name]
        return f"/static/{name}?v={digest}"

    def render(self, template: str, request: Request, **values: Any) -> HTMLResponse:
        session: Session | None = values.get("session")
        values.setdefault("flashes", session.take_flashes() if session else [])
        values.setdefault("path", request.url.path)
        values.setdefault("title", "Log in")
        values.setdefault("csrf", session.csrf if session else "")
        body = self.env.get_template(template).render(**values)
        return HTMLResponse(body, headers=self._headers(), status_code=values.get("status", 200))

    def _headers(self) -> dict[str, str]:
        console = self.console_origin
        return {
            "Content-Security-Policy": (
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' "
                f"data:; frame-src {console}; connect-src 'self'; form-action 'self'; "
                "frame-ancestors 'none'; base-uri 'none'"),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store",
        }

    def route(self, path: str, handler: Handler, methods: tuple[str, ...] = ("GET",),
              admin: bool = False) -> None:
        async def endpoint(request: Request) -> Response:
            session = self.store.get(request.cookies.get(SESSION_COOKIE))
            if session is None:
                if request.method == "GET" and not path.endswith("/status"):
                    return RedirectResponse(f"/auth/login/?next={request.url.path}",
                                            status_code=303)
                return JSONResponse({"error": "not logged in"}, status_code=401)
            ctx = Ctx(self, request, session)
            try:
                if request.method != "GET":
                    if request.method == "POST":
                        await self._read_form(ctx)
                    if not csrf_ok(session, ctx.field(CSRF_FIELD)) and not csrf_ok(
                            session, request.headers.get("x-csrftoken")):
                        raise Forbidden("The form is missing its CSRF token, or it is "
                                        "stale; reload the page and try again.")
                if admin and not session.is_admin:
                    raise Forbidden("This page is for administrators.")
                return await handler(ctx)
            except Forbidden as exc:
                return self.render("error.html", request, session=session, status=403,
                                   title="Forbidden", message=str(exc))
            except ApiFailure as exc:
                if exc.status == 401:
                    self.store.drop(session)
                    return RedirectResponse("/auth/login/", status_code=303)
                return self.render("error.html", request, session=session,
                                   status=exc.status if 400 <= exc.status < 600 else 502,
                                   title="The cloud refused", message=exc.message)
            except Exception:  # noqa: BLE001 - an error page, never a traceback
                LOG.exception("dashboard page %s failed", request.url.path)
                return self.render("error.html", request, session=session, status=500,
                                   title="Something went wrong",
                                   message="The page could not be built; see the log.")

        self.routes.append(Route(path, endpoint, methods=list(methods)))

    async def _read_form(self, ctx: Ctx) -> None:
        ctype = ctx.request.headers.get("content-type", "")
        if not ctype.startswith("application/x-www-form-urlencoded"):
            return
        body = b""
        async for chunk in ctx.request.stream():
            body += chunk
            if len(body) > MAX_FORM:
                raise Forbidden("The form is too large.")
        ctx.form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True,
                            max_num_fields=2000)

    # ------------------------------------------------------------------ auth
    async def login_page(self, request: Request) -> Response:
        if request.method == "GET" and self.store.get(request.cookies.get(SESSION_COOKIE)):
            return RedirectResponse("/project/", status_code=303)
        return self._login_form(request)

    def _login_form(self, request: Request, error: str = "", status: int = 200,
                    user: str = "") -> Response:
        token = self.store.login_csrf()
        response = self.render("login.html", request, session=None, csrf=token, error=error,
                               region=self.region, user=user, status=status,
                               next=_safe_next(request.query_params.get("next", "")))
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="lax", path="/")
        return response

    async def login(self, request: Request) -> Response:
        raw = await request.body()
        if len(raw) > MAX_FORM:
            return self._login_form(request, "The form is too large.", 400)
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        if not self.store.login_csrf_valid(request.cookies.get(CSRF_COOKIE),
                                           form.get(CSRF_FIELD)):
            return self._login_form(request, "Your session expired; log in again.", 403)
        user, password = form.get("username", ""), form.get("password", "")
        if not user or not password or len(user) > 255 or len(password) > 4096:
            return self._login_form(request, "User name and password are required.", 400,
                                    user=user[:255])
        domain = form.get("domain") or "Default"
        try:
            session = await self.keystone.login(user, password, domain,
                                                form.get("region") or self.region)
        except ApiFailure as exc:
            return self._login_form(request, exc.message, 401 if exc.status == 401 else 403,
                                    user=user)
        self.store.add(session)
        response = RedirectResponse(_safe_next(form.get("next", "")) or "/project/",
                                    status_code=303)
        response.set_cookie(SESSION_COOKIE, self.store.cookie_value(session), httponly=True,
                            samesite="lax", path="/",
                            max_age=max(60, int(session.expires_at - time.time()))
                            if session.expires_at else None)
        response.delete_cookie(CSRF_COOKIE, path="/")
        return response

    async def logout(self, ctx: Ctx) -> Response:
        with contextlib.suppress(httpx.HTTPError):
            await self.keystone.logout(ctx.session)
        self.store.drop(ctx.session)
        response = RedirectResponse("/auth/login/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def switch_project(self, ctx: Ctx) -> Response:
        project = ctx.field("project_id")
        if project not in {p["id"] for p in ctx.session.projects}:
            raise Forbidden("You have no role on that project.")
        await self.keystone.scope(ctx.session, project)
        return ctx.redirect("/project/", ok=f"Switched to project {ctx.session.project_name}.")

    # ------------------------------------------------------------------ static
    async def static_file(self, request: Request) -> Response:
        name = request.path_params["name"]
        item = self.static.get(name)
        if item is None:
            return Response("not found", status_code=404, media_type="text/plain")
        body, ctype, digest = item
        if request.headers.get("if-none-match") == f'"{digest}"':
            return Response(status_code=304)
        return Response(body, media_type=ctype, headers={
            "Cache-Control": "public, max-age=31536000, immutable", "ETag": f'"{digest}"',
            "X-Content-Type-Options": "nosniff"})

    async def root(self, request: Request) -> Response:
        if self.store.get(request.cookies.get(SESSION_COOKIE)) is None:
            return self._login_form(request)
        return RedirectResponse("/project/", status_code=303)

    async def health(self, request: Request) -> Response:
        return Response("OK", media_type="text/plain")


def _safe_next(url: str) -> str:
    """A local path to go to after login (never another site)."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not url.startswith("/") or url.startswith("//"):
        return ""
    return url[:512]


def _load_static() -> dict[str, tuple[bytes, str, str]]:
    out = {}
    types = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
             ".svg": "image/svg+xml"}
    for item in resources.files("onestack.dashboard").joinpath("static").iterdir():
        if item.is_file():
            body = item.read_bytes()
            suffix = "." + item.name.rsplit(".", 1)[-1]
            out[item.name] = (body, types.get(suffix, "application/octet-stream"),
                              hashlib.sha256(body).hexdigest()[:16])
    return out
