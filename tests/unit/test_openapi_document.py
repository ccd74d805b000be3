import pytest
from openapi_spec_validator import validate
from support.api import api_module
from support.openapi import spec

pytestmark = pytest.mark.unit


def test_openapi_yaml_is_a_valid_openapi_document() -> None:
    validate(spec())


def test_every_api_route_is_described() -> None:
    paths = spec()["paths"]
    app = api_module().app
    routes = [(path, method.lower()) for path, methods in app.routes.items() for method in methods]
    assert len(routes) >= 12
    for path, method in routes:
        assert method in paths.get(path, {}), f"{method.upper()} {path} missing from openapi.yaml"
