"""Routes declared on their handlers.

A handler method says which requests it serves with ``@serves("GET", "/v2.1/flavors")``. A
method may serve several paths, one decorator each; a decorator's keyword arguments are passed
to the method on that route (``detail=True`` on ``/flavors/detail``).
``add_declared(service, handler)`` turns every declared method of a handler object into a route
of the service, in the order the methods are defined (base classes first), each decorator
read top to bottom.

Starlette tries routes in order, so a route must come before a more general one that would
otherwise catch its requests (``/servers/detail`` before ``/servers/{server_id}``).
``order_routes`` keeps the declared order (services put their hot paths first) and only moves a
route ahead of the first earlier route that would shadow it; ``make_app`` applies it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.routing import BaseRoute, Route

ROUTES_ATTR = "_onestack_routes"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class RouteDecl:
    """One ``@serves`` of a handler method: its path, HTTP methods and whether it needs no
    token."""

    methods: tuple[str, ...]
    path: str
    public: bool = False
    #: Keyword arguments the handler is called with on this route.
    args: tuple[tuple[str, Any], ...] = ()


def serves(methods: str, path: str, *, public: bool = False, **args: Any
           ) -> Callable[[F], F]:
    """Declare that the decorated handler serves ``methods`` (space-separated, e.g.
    ``"GET HEAD"``) on ``path`` (a Starlette path template). ``public``: no token needed;
    ``args``: keyword arguments the handler gets on this route."""
    decl = RouteDecl(tuple(methods.split()), path, public, tuple(sorted(args.items())))

    def mark(fn: F) -> F:
        # Decorators apply bottom-up: prepend, so the declarations read top to bottom.
        setattr(fn, ROUTES_ATTR, (decl, *getattr(fn, ROUTES_ATTR, ())))
        return fn

    return mark


def declared(handler: object) -> Iterator[tuple[RouteDecl, Callable[..., Any]]]:
    """Each route declared on ``handler``'s methods with the coroutine function serving it
    (the bound method, with the route's ``args`` if any), in definition order (base classes
    first)."""
    seen: set[str] = set()
    for cls in reversed(type(handler).__mro__):
        for name, attr in vars(cls).items():
            decls: tuple[RouteDecl, ...] = getattr(attr, ROUTES_ATTR, ())
            if not decls or name in seen:
                continue
            seen.add(name)
            bound = getattr(handler, name)
            for decl in decls:
                yield decl, _with_args(bound, dict(decl.args)) if decl.args else bound


def _with_args(fn: Callable[..., Any], args: dict[str, Any]) -> Callable[..., Any]:
    async def call(req: Any) -> Any:
        return await fn(req, **args)

    call.__name__ = fn.__name__
    call.__qualname__ = fn.__qualname__
    return call


# Segment kinds, most specific first: a literal, a parameter inside other text, a whole-segment
# parameter, a ``{name:path}`` parameter (which takes the rest of the path).
_LITERAL, _MIXED, _PARAM, _REST = range(4)


def _kinds(path: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for seg in path.split("/"):
        if "{" not in seg:
            out.append((_LITERAL, seg))
        elif seg.startswith("{") and seg.endswith("}") and seg.count("{") == 1:
            out.append((_REST if seg.endswith(":path}") else _PARAM, seg))
        else:
            out.append((_MIXED, seg))
    return out


def _shadows(general: Route, specific: Route) -> bool:
    """Whether ``general``, tried first, would catch requests meant for the more specific
    ``specific``: they share a method, some path matches both, and at the first segment where
    they differ in kind ``specific`` is the more literal one."""
    if not (general.methods or set()) & (specific.methods or set()):
        return False
    if general.path == specific.path:
        # A route of its own for HEAD goes before the GET route that also answers HEAD.
        return "GET" in (general.methods or ()) and "GET" not in (specific.methods or ())
    a, b = _kinds(general.path), _kinds(specific.path)
    verdict = False
    if len(a) != len(b) and _REST not in (k for k, _ in a + b):
        return False
    for (ka, sa), (kb, sb) in zip(a, b, strict=False):
        if ka == _LITERAL and kb == _LITERAL and sa != sb:
            return False  # no path matches both
        if _REST in (ka, kb):
            return verdict or kb < ka
        if ka != kb and not verdict:
            if kb > ka:
                return False  # ``general`` is the more specific one: the order is right
            verdict = True
    return verdict


def order_routes(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """``routes`` in their order, but each route ahead of the first earlier one that would
    shadow it."""
    out: list[BaseRoute] = []
    for new in routes:
        pos = len(out)
        if isinstance(new, Route):
            for i, old in enumerate(out):
                if isinstance(old, Route) and _shadows(old, new):
                    pos = i
                    break
        out.insert(pos, new)
    return out
