"""Query parameters a route does not declare are refused (400), never silently ignored."""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant

from openpitrix.errors import InvalidParameter

_CACHE_ATTR = "_openpitrix_query_names"


def declared_query_names(dependant: Dependant) -> frozenset[str]:
    """Every query parameter the route and its dependencies declare, by the name sent."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= declared_query_names(sub)
    return frozenset(names)


async def reject_unknown_query(request: Request) -> None:
    """App-wide dependency: a misspelt filter (`?categroy=web`) or one a route does not have
    (`/v1/apps?category=web`) would otherwise answer as if no filter were given."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    dependant: Dependant | None = getattr(route, "dependant", None)
    if route is None or dependant is None:
        return
    known: frozenset[str] | None = getattr(route, _CACHE_ATTR, None)
    if known is None:
        known = declared_query_names(dependant)
        setattr(route, _CACHE_ATTR, known)  # computed once per route
    for name in request.query_params:
        if name not in known:
            raise InvalidParameter(name, "unknown query parameter", allowed=sorted(known))
