"""The cloud as the dashboard sees it: the public APIs, with the logged-in user's token.

``login`` authenticates with Keystone v3 (password, then a project-scoped token from the
unscoped one, as Horizon does); ``CloudClient`` calls the services found in the token's
catalog. An API error becomes ``ApiFailure`` with the message of the service's own fault
body (Nova's ``{"itemNotFound": {"message"}}``, Neutron's ``NeutronError``, Keystone's
``error``, Glance's and placement's shapes), which the pages show as they are.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx

from onestack.dashboard.session import Session, new_session_id

#: Microversions the pages speak.
HEADERS = {"OpenStack-API-Version": "compute 2.79, volume 3.60",
           "X-OpenStack-Nova-API-Version": "2.79"}


class ApiFailure(Exception):
    """An API answered an error; ``message`` is its fault body's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def fault_message(response: httpx.Response) -> str:
    """The human message of any OpenStack fault body."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:300] or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        if "NeutronError" in body and isinstance(body["NeutronError"], dict):
            return str(body["NeutronError"].get("message", ""))
        if "errors" in body and isinstance(body["errors"], list) and body["errors"]:
            first = body["errors"][0]
            return str(first.get("detail") or first.get("title") or "")
        for value in body.values():
            if isinstance(value, dict) and "message" in value:
                return str(value["message"])
        if "message" in body:
            return str(body["message"])
    return f"HTTP {response.status_code}"


def _expiry(stamp: str | None) -> float:
    if not stamp:
        return 0.0
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


class Keystone:
    """The identity calls of login, logout and project switching."""

    def __init__(self, http: httpx.AsyncClient, auth_url: str) -> None:
        self.http = http
        self.auth_url = auth_url.rstrip("/")

    async def login(self, user: str, password: str, domain: str, region: str) -> Session:
        """A session for ``user`` (``ApiFailure`` 401 for wrong credentials), scoped to
        the user's default project or else the first one it has a role on."""
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "password": password, "domain": {"name": domain}}}}}}
        r = await self.http.post(self.auth_url + "/v3/auth/tokens", json=body)
        if r.status_code != 201:
            raise ApiFailure(r.status_code, "Invalid credentials." if r.status_code == 401
                             else fault_message(r))
        token = r.headers["X-Subject-Token"]
        info = r.json()["token"]
        session = Session(id=new_session_id(), user_id=info["user"]["id"],
                          user_name=info["user"]["name"], domain_name=domain, region=region,
                          unscoped_token=token, expires_at=_expiry(info.get("expires_at")))
        await self.refresh_projects(session)
        if not session.projects:
            raise ApiFailure(403, "You are not authorized for any projects.")
        user_doc = await self.http.get(f"{self.auth_url}/v3/users/{session.user_id}",
                                       headers={"X-Auth-Token": token})
        default = (user_doc.json().get("user", {}).get("default_project_id")
                   if user_doc.status_code == 200 else None)
        first = next((p for p in session.projects if p["id"] == default), session.projects[0])
        await self.scope(session, first["id"])
        return session

    async def refresh_projects(self, session: Session) -> None:
        r = await self.http.get(self.auth_url + "/v3/auth/projects",
                                headers={"X-Auth-Token": session.unscoped_token})
        if r.status_code == 200:
            session.projects = sorted(
                ({"id": p["id"], "name": p["name"]} for p in r.json().get("projects", [])
                 if p.get("enabled", True)), key=lambda p: p["name"])

    async def scope(self, session: Session, project_id: str) -> None:
        """Make ``project_id`` the session's current project (a scoped token)."""
        body = {"auth": {"identity": {"methods": ["token"],
                                      "token": {"id": session.unscoped_token}},
                         "scope": {"project": {"id": project_id}}}}
        r = await self.http.post(self.auth_url + "/v3/auth/tokens", json=body)
        if r.status_code != 201:
            raise ApiFailure(r.status_code, fault_message(r))
        info = r.json()["token"]
        session.token = r.headers["X-Subject-Token"]
        session.project_id = info["project"]["id"]
        session.project_name = info["project"]["name"]
        session.roles = [role["name"] for role in info.get("roles", [])]
        session.catalog = {}
        for svc in info.get("catalog", []):
            public = [ep for ep in svc.get("endpoints", []) if ep.get("interface") == "public"]
            pick = next((ep for ep in public
                         if session.region in (ep.get("region"), ep.get("region_id"))),
                        public[0] if public else None)
            if pick is not None:
                session.catalog[svc["type"]] = pick["url"].rstrip("/")
        session.expires_at = min(filter(None, [session.expires_at,
                                               _expiry(info.get("expires_at"))]),
                                 default=0.0)

    async def logout(self, session: Session) -> None:
        for token in {session.token, session.unscoped_token} - {""}:
            await self.http.delete(self.auth_url + "/v3/auth/tokens",
                                   headers={"X-Auth-Token": token, "X-Subject-Token": token})


class CloudClient:
    """The services of one session's catalog."""

    def __init__(self, http: httpx.AsyncClient, session: Session) -> None:
        self.http = http
        self.session = session

    def url(self, service: str, path: str) -> str:
        """The URL of ``path`` on ``service``. Ids from the browser go into paths: a path
        that would step out of its resource (``..``) or smuggle a query is refused."""
        if any(ch in path for ch in "?#%\\") or any(ord(ch) < 32 for ch in path) or any(
                seg in (".", "..") for seg in path.split("/")):
            raise ApiFailure(400, "Invalid resource name.")
        base = self.session.catalog.get(service)
        if base is None:
            raise ApiFailure(503, f"The {service} service is not in your catalog.")
        return base + path

    async def request(self, method: str, service: str, path: str, *,
                      ok: tuple[int, ...] = (200, 201, 202, 204), **kw: Any) -> Any:
        headers = {"X-Auth-Token": self.session.token, **HEADERS, **kw.pop("headers", {})}
        try:
            r = await self.http.request(method, self.url(service, path), headers=headers, **kw)
        except httpx.HTTPError as exc:
            raise ApiFailure(503, f"The {service} service did not answer: {exc}") from exc
        if r.status_code not in ok:
            raise ApiFailure(r.status_code, fault_message(r))
        if not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            return r.text

    async def get(self, service: str, path: str, **params: Any) -> Any:
        return await self.request("GET", service, path,
                                  params={k: v for k, v in params.items() if v is not None})

    async def post(self, service: str, path: str, body: Any = None, **kw: Any) -> Any:
        return await self.request("POST", service, path, json=body, **kw)

    async def put(self, service: str, path: str, body: Any = None, **kw: Any) -> Any:
        return await self.request("PUT", service, path, json=body, **kw)

    async def delete(self, service: str, path: str) -> Any:
        return await self.request("DELETE", service, path)

    async def upload(self, image_id: str, chunks: AsyncIterator[bytes], size: int | None
                     ) -> None:
        """Stream an image's data to the image service (never held whole in memory)."""
        headers = {"Content-Type": "application/octet-stream"}
        if size is not None:
            headers["Content-Length"] = str(size)
        await self.request("PUT", "image", f"/v2/images/{image_id}/file", content=chunks,
                           headers=headers, timeout=None)
