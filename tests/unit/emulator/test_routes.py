"""Route matching as API Gateway does it."""

import pytest

from emulator.routes import Route, RouteTable
from emulator.template import ApiEvent

pytestmark = pytest.mark.unit


def _route(function: str, path: str, method: str = "ANY") -> Route:
    return Route(function, ApiEvent("E", "Api", "test", path, method, False))


TABLE = RouteTable(
    [
        _route("proxy", "/{proxy+}"),
        _route("item", "/items/{item_id}", "GET"),
        _route("item_any", "/items/{item_id}"),
        _route("special", "/items/special", "GET"),
        _route("deep", "/items/{item_id}/parts/{part}", "GET"),
        _route("provider", "/providers/default/{proxy+}"),
    ]
)


@pytest.mark.parametrize(
    ("method", "path", "function", "params"),
    [
        ("GET", "/items/special", "special", {}),
        ("GET", "/items/42", "item", {"item_id": "42"}),
        ("POST", "/items/42", "item_any", {"item_id": "42"}),
        ("GET", "/items/4%202", "item", {"item_id": "4 2"}),
        ("GET", "/items/7/parts/x", "deep", {"item_id": "7", "part": "x"}),
        ("GET", "/items/7/parts", "proxy", {"proxy": "items/7/parts"}),
        ("PUT", "/providers/default/payments/1", "provider", {"proxy": "payments/1"}),
        ("GET", "/anything/else", "proxy", {"proxy": "anything/else"}),
    ],
)
def test_most_specific_route_wins(method, path, function, params):
    match = TABLE.match(method, path)
    assert match is not None
    assert (match.route.function, match.path_parameters) == (function, params)


def test_greedy_variable_needs_a_segment_and_unknown_paths_do_not_match():
    assert TABLE.match("GET", "/") is None
    assert RouteTable([_route("only", "/items/{id}", "GET")]).match("POST", "/items/1") is None
