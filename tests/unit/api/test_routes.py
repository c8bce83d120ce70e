"""Routes declared with ``@serves``: what a handler declares, and the order that keeps a route
ahead of a more general one."""

from __future__ import annotations

from starlette.routing import Route

from onestack.api.routes import RouteDecl, declared, order_routes, serves


async def _h(request: object) -> None:
    return None


def _r(path: str, *methods: str) -> Route:
    return Route(path, _h, methods=list(methods))


class _Base:
    @serves("GET", "/things")
    async def list_things(self, req: object) -> None:
        return None


class _Handler(_Base):
    @serves("GET", "/v3")
    @serves("GET", "/v3/")
    async def version(self, req: object) -> None:
        return None

    async def not_a_route(self, req: object) -> None:
        return None

    @serves("GET HEAD", "/healthcheck", public=True)
    async def health(self, req: object) -> None:
        return None


def test_declared_in_definition_order_base_first_decorators_top_down() -> None:
    h = _Handler()
    got = [(d, fn.__name__) for d, fn in declared(h)]
    assert got == [
        (RouteDecl(("GET",), "/things"), "list_things"),
        (RouteDecl(("GET",), "/v3"), "version"),
        (RouteDecl(("GET",), "/v3/"), "version"),
        (RouteDecl(("GET", "HEAD"), "/healthcheck", True), "health"),
    ]
    # bound to the handler object
    assert next(fn for _, fn in declared(h)).__self__ is h


def _paths(routes: list[Route]) -> list[str]:
    return [f"{r.path} {','.join(sorted(r.methods or ()))}" for r in routes]


def test_literal_goes_before_the_parameter_that_would_catch_it() -> None:
    routes = [_r("/servers", "GET"), _r("/servers/{id}", "GET"), _r("/servers/detail", "GET")]
    assert _paths(order_routes(routes)) == [
        "/servers GET,HEAD", "/servers/detail GET,HEAD", "/servers/{id} GET,HEAD"]


def test_no_move_without_a_shared_method_or_a_shared_path() -> None:
    routes = [_r("/servers/{id}", "DELETE"), _r("/servers/detail", "GET"),
              _r("/a/{x}", "GET"), _r("/b/c", "GET"), _r("/a/{x}/c", "GET")]
    assert order_routes(routes) == routes


def test_declared_order_kept_when_already_right_and_for_hot_paths() -> None:
    routes = [_r("/v2.0/{coll}", "POST"), _r("/v2.0/ports", "GET"), _r("/", "GET")]
    assert order_routes(routes) == routes


def test_head_route_goes_before_get_on_the_same_path() -> None:
    get, head = _r("/x/{id}", "GET"), _r("/x/{id}", "HEAD")
    assert order_routes([get, head]) == [head, get]
    assert order_routes([head, get]) == [head, get]


def test_rest_of_path_parameter_is_the_most_general() -> None:
    rest, exact = _r("/v2/schemas/{name:path}", "GET"), _r("/v2/schemas/image", "GET")
    assert order_routes([rest, exact]) == [exact, rest]
    deeper = _r("/v2/schemas/{name}/x", "GET")
    assert order_routes([rest, deeper]) == [deeper, rest]


def test_first_segment_where_they_differ_decides() -> None:
    a, b = _r("/a/{x}/c", "GET"), _r("/a/b/{y}", "GET")
    assert order_routes([a, b]) == [b, a]  # b is the literal one first
    assert order_routes([b, a]) == [b, a]


class _Lists:
    def __init__(self) -> None:
        self.calls: list[bool] = []

    @serves("GET", "/things")
    @serves("GET", "/things/detail", detail=True)
    async def list_things(self, req: object, detail: bool = False) -> bool:
        self.calls.append(detail)
        return detail


async def test_route_arguments_reach_the_handler() -> None:
    h = _Lists()
    got = {d.path: fn for d, fn in declared(h)}
    assert await got["/things"](None) is False
    assert await got["/things/detail"](None) is True
    assert got["/things/detail"].__name__ == "list_things"
    assert h.calls == [False, True]
