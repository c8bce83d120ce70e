"""The dashboard's ASGI app: ``app.Dashboard``'s own routes (login, logout, project
switch, assets) and every page module's."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from onestack.config import Settings
from onestack.dashboard import pages_admin, pages_compute, pages_network, pages_storage
from onestack.dashboard.app import Dashboard


def build_dashboard_app(settings: Settings) -> Starlette:
    """The dashboard's ASGI app (port ``dashboard_port``)."""
    dash = Dashboard(settings)
    routes = [
        Route("/", dash.root, methods=["GET"]),
        Route("/dashboard", dash.root, methods=["GET"]),
        Route("/dashboard/", dash.root, methods=["GET"]),
        Route("/auth/login/", dash.login_page, methods=["GET"]),
        Route("/auth/login/", dash.login, methods=["POST"]),
        Route("/static/{name}", dash.static_file, methods=["GET"]),
        Route("/healthcheck", dash.health, methods=["GET"]),
    ]
    dash.route("/auth/logout/", dash.logout, ("POST",))
    dash.route("/auth/switch/", dash.switch_project, ("POST",))
    for pages in (pages_compute, pages_storage, pages_network, pages_admin):
        pages.PAGES.register(dash)
    app = Starlette(routes=routes + dash.routes)
    app.state.dashboard = dash
    return app
