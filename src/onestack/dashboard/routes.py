"""A pages module's routes, each declared on its handler (``@PAGES.get(path)``,
``@PAGES.post(path)``) as the API modules declare theirs with ``@serves``;
``server.build_dashboard_app`` puts every module's table on the dashboard."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.responses import Response

    from onestack.dashboard.app import Ctx, Dashboard, Handler


@dataclass(frozen=True)
class PageRoute:
    """One page route: its path, handler and methods."""

    path: str
    handler: Handler
    methods: tuple[str, ...]


@dataclass
class Pages:
    """The routes of one pages module, in the order they were declared; ``admin`` pages
    answer only a user with the admin role (``Dashboard.route``)."""

    admin: bool = False
    routes: list[PageRoute] = field(default_factory=list)

    def get(self, path: str) -> Callable[[Handler], Handler]:
        return self.serves(path, "GET")

    def post(self, path: str) -> Callable[[Handler], Handler]:
        return self.serves(path, "POST")

    def serves(self, path: str, *methods: str) -> Callable[[Handler], Handler]:
        """Declare ``path`` (for ``methods``) as answered by the decorated handler."""
        def declare(handler: Handler) -> Handler:
            self.routes.append(PageRoute(path, handler, methods))
            return handler
        return declare

    def deletes(self, path: str, service: str, api_path: str, *, back: str,
                ok: str) -> None:
        """Declare ``path`` (POST: a page's delete button) as deleting one resource of the
        cloud: ``DELETE`` ``api_path`` of ``service``, its ``{placeholders}`` filled from
        ``path``'s, then back to the page ``back`` with ``ok`` or the API's failure."""
        async def delete(ctx: Ctx) -> Response:
            target = api_path.format_map(ctx.request.path_params)
            return await ctx.act(back, ok, ctx.cloud.delete(service, target))
        delete.__qualname__ = delete.__name__ = f"delete {api_path}"
        self.serves(path, "POST")(delete)

    def register(self, dash: Dashboard) -> None:
        """Put every declared route on ``dash``."""
        for r in self.routes:
            dash.route(r.path, r.handler, r.methods, admin=self.admin)
