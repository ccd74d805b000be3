import inspect
import json
import sys

import pytest
from consim.config import REPO_ROOT
from consim.domain import errors

sys.path.insert(0, str(REPO_ROOT / "functions" / "api"))
from chalicelib.problems import PROBLEM_JSON, to_problem

pytestmark = pytest.mark.unit


def domain_errors() -> list[type[errors.DomainError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.DomainError) and cls is not errors.DomainError
    ]


def instance(cls: type[errors.DomainError]) -> errors.DomainError:
    arity = len(inspect.signature(cls.__init__).parameters) - 1
    return cls(*["x"] * arity) if cls.__init__ is not errors.DomainError.__init__ else cls("x")


@pytest.mark.parametrize("cls", domain_errors(), ids=lambda c: c.__name__)
def test_every_domain_error_is_a_4xx_problem(cls) -> None:
    response = to_problem(instance(cls))
    body = json.loads(response.body)
    assert 400 <= response.status_code < 500
    assert response.headers["Content-Type"] == PROBLEM_JSON
    assert body["status"] == response.status_code
    assert body["type"].startswith("https://")
    assert body["title"]
    assert body["detail"]


def test_insufficient_funds_is_422_with_its_type() -> None:
    response = to_problem(errors.InsufficientFunds("a1", 5, 2))
    body = json.loads(response.body)
    assert response.status_code == 422
    assert body["type"].endswith("/insufficient-funds")
    assert "5" in body["detail"]


def test_an_unexpected_error_is_a_500_without_internals() -> None:
    response = to_problem(RuntimeError("secret connection string"))
    assert response.status_code == 500
    assert "secret" not in response.body
