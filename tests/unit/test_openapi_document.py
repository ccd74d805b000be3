import pytest
from openapi_spec_validator import validate
from support.openapi import spec

pytestmark = pytest.mark.unit


def test_openapi_yaml_is_a_valid_openapi_document() -> None:
    validate(spec())


def test_every_api_route_is_described() -> None:
    paths = spec()["paths"]
    for path, method in [
        ("/health", "get"),
        ("/accounts", "post"),
        ("/accounts/{account_id}", "get"),
        ("/accounts/{account_id}/statement", "get"),
        ("/payments", "post"),
        ("/payments/{payment_id}", "get"),
        ("/payments/{payment_id}/events", "get"),
        ("/payments-summary", "get"),
    ]:
        assert method in paths[path], f"{method.upper()} {path} missing from openapi.yaml"
