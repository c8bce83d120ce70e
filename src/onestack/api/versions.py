"""Version-discovery helpers and the health check every endpoint answers."""

from __future__ import annotations

from starlette.responses import PlainTextResponse, Response

from onestack.api.app import ApiRequest


async def healthcheck(req: ApiRequest) -> Response:
    """``GET /healthcheck``: 200 ``OK`` while the process serves requests."""
    return PlainTextResponse("OK")
