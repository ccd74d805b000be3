"""Check API responses against openapi.yaml (status documented, body matches its schema)."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import yaml
from consim.config import REPO_ROOT
from jsonschema import Draft202012Validator


@cache
def spec() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "openapi.yaml").read_text())


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def check(method: str, path: str, response: Any) -> Any:
    """Validate a chalice.test or requests-like response; return its JSON body."""
    status = str(getattr(response, "status_code", None) or response.status)
    operation = spec()["paths"][path][method.lower()]
    documented = operation["responses"]
    assert status in documented, f"{method} {path} answered {status}, not in openapi.yaml"

    raw = response.body if hasattr(response, "body") else response.content
    content = _resolve(documented[status]).get("content", {})
    if not content:
        assert not raw, f"{method} {path} {status}: documented without a body, got one"
        return None

    headers = {k.lower(): v for k, v in response.headers.items()}
    content_type = headers.get("content-type", "").split(";")[0]
    assert content_type in content, f"{method} {path} {status}: unexpected {content_type!r}"

    body = json.loads(raw)
    schema = {**content[content_type]["schema"], "components": spec()["components"]}
    Draft202012Validator(schema).validate(body)
    return body
