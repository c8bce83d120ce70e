"""Page route tables (``dashboard/routes.py``): declared on handlers, put on a dashboard in
order, and the delete buttons' routes."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from starlette.responses import Response

from onestack.dashboard.cloud import ApiFailure
from onestack.dashboard.routes import Pages


class _Dash:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, tuple[str, ...], bool]] = []

    def route(self, path: str, handler: Any, methods: tuple[str, ...] = ("GET",),
              admin: bool = False) -> None:
        self.calls.append((path, handler, methods, admin))


class _Request:
    def __init__(self, **params: str) -> None:
        self.path_params = params


class _Cloud:
    def __init__(self, fail: bool = False) -> None:
        self.deleted: list[tuple[str, str]] = []
        self.fail = fail

    async def delete(self, service: str, path: str) -> None:
        self.deleted.append((service, path))
        if self.fail:
            raise ApiFailure(409, "in use")


class _Ctx:
    def __init__(self, cloud: _Cloud, **params: str) -> None:
        self.request = _Request(**params)
        self.cloud = cloud
        self.outcome: tuple[str, str] | None = None

    async def act(self, back: str, ok: str, change: Awaitable[object]) -> Response:
        try:
            await change
        except ApiFailure as exc:
            self.outcome = (back, exc.message)
        else:
            self.outcome = (back, ok)
        return Response(status_code=303)


def test_routes_go_on_the_dashboard_in_declared_order() -> None:
    pages = Pages(admin=True)

    @pages.get("/admin/things/")
    @pages.serves("/admin/things/raw", "PUT")
    async def things(ctx: Any) -> Response:
        return Response()

    @pages.post("/admin/things/create")
    async def create(ctx: Any) -> Response:
        return Response()

    dash = _Dash()
    pages.register(dash)  # type: ignore[arg-type]
    # Stacked decorators apply from the bottom up.
    assert dash.calls == [("/admin/things/raw", things, ("PUT",), True),
                          ("/admin/things/", things, ("GET",), True),
                          ("/admin/things/create", create, ("POST",), True)]
    assert Pages().admin is False


async def test_a_delete_route_deletes_the_resource_its_path_names() -> None:
    pages = Pages()
    pages.deletes("/project/key_pairs/{name}/delete", "compute", "/os-keypairs/{name}",
                  back="/project/key_pairs/", ok="Key pair deleted.")
    (route,) = pages.routes
    assert (route.path, route.methods) == ("/project/key_pairs/{name}/delete", ("POST",))
    cloud = _Cloud()
    ctx = _Ctx(cloud, name="my key")
    response = await route.handler(ctx)  # type: ignore[arg-type]
    assert response.status_code == 303
    assert cloud.deleted == [("compute", "/os-keypairs/my key")]
    assert ctx.outcome == ("/project/key_pairs/", "Key pair deleted.")


async def test_a_refused_delete_goes_back_with_the_api_message() -> None:
    pages = Pages()
    pages.deletes("/project/volumes/{id}/delete", "block-storage", "/volumes/{id}",
                  back="/project/volumes/", ok="Deleting the volume.")
    cloud = _Cloud(fail=True)
    ctx = _Ctx(cloud, id="v1")
    await pages.routes[0].handler(ctx)  # type: ignore[arg-type]
    assert cloud.deleted == [("block-storage", "/volumes/v1")]
    assert ctx.outcome == ("/project/volumes/", "in use")
