"""API Gateway's route matching for REST APIs, without I/O.

A path segment that is a literal beats a {param}, which beats a greedy {proxy+}; comparing the
ranks of the segments left to right picks the route API Gateway would pick. An exact method beats
ANY for the same path.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from emulator.template import ApiEvent

_LITERAL, _PARAM, _GREEDY = 2, 1, 0


@dataclass(frozen=True)
class Route:
    function: str  # logical id
    event: ApiEvent

    @property
    def segments(self) -> list[str]:
        return [s for s in self.event.path.split("/") if s]


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    path_parameters: dict[str, str]


def _match_segments(template: list[str], actual: list[str]) -> tuple[tuple, dict] | None:
    ranks: list[int] = []
    params: dict[str, str] = {}
    for index, segment in enumerate(template):
        if segment.startswith("{") and segment.endswith("+}"):
            rest = actual[index:]
            if not rest:
                return None  # a greedy variable needs at least one segment
            params[segment[1:-2]] = "/".join(rest)
            ranks.append(_GREEDY)
            return tuple(ranks), params
        if index >= len(actual):
            return None
        if segment.startswith("{") and segment.endswith("}"):
            params[segment[1:-1]] = actual[index]
            ranks.append(_PARAM)
        elif segment == actual[index]:
            ranks.append(_LITERAL)
        else:
            return None
    if len(actual) != len(template):
        return None
    return tuple(ranks), params


class RouteTable:
    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes

    def match(self, method: str, path: str) -> RouteMatch | None:
        actual = [unquote(s) for s in path.split("/") if s]
        best: tuple[tuple, int, RouteMatch] | None = None
        for route in self.routes:
            if route.event.method not in ("ANY", method.upper()):
                continue
            matched = _match_segments(route.segments, actual)
            if matched is None:
                continue
            ranks, params = matched
            method_rank = 1 if route.event.method != "ANY" else 0
            candidate = (ranks, method_rank, RouteMatch(route, params))
            if best is None or (ranks, method_rank) > (best[0], best[1]):
                best = candidate
        return None if best is None else best[2]

    def knows_path(self, path: str) -> bool:
        """Whether some route has this path with another method (API Gateway answers 403)."""
        actual = [unquote(s) for s in path.split("/") if s]
        return any(_match_segments(r.segments, actual) is not None for r in self.routes)
