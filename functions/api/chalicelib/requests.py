"""Reading a request: who calls, and its JSON body."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from chalice.app import Request
from consim.adapters.dynamodb import ClientDirectory

from .problems import MalformedRequest, PayloadTooLarge, Unauthorized

MAX_BODY_BYTES = 16 * 1024

_clients = ClientDirectory()


def api_key(request: Request) -> str | None:
    # API Gateway validated the key and names it in the request context; Chalice's local server
    # and test client do not, so the header is the fallback (the lookup still validates it).
    identity = (request.context or {}).get("identity") or {}
    return identity.get("apiKey") or request.headers.get("x-api-key")


def client_id(request: Request) -> str:
    key = api_key(request)
    if not key:
        raise Unauthorized("an API key (x-api-key) is required")
    return _clients.client_id(key)


def json_object(request: Request) -> dict[str, Any]:
    raw = request.raw_body or b""
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as error:
        raise MalformedRequest(f"the body is not JSON: {error}") from error
    if not isinstance(body, dict):
        raise MalformedRequest("the body must be a JSON object")
    return body


def require_fields(body: dict[str, Any], types: dict[str, type | tuple[type, ...]]) -> None:
    """Missing or wrong-typed fields are malformed (400); values out of range are invalid (422)."""
    for name, expected in types.items():
        if name not in body:
            raise MalformedRequest(f"{name} is required")
        value = body[name]
        if isinstance(value, bool) or not isinstance(value, expected):
            raise MalformedRequest(f"{name} has the wrong type")


def optional_fields(body: dict[str, Any], types: dict[str, type | tuple[type, ...]]) -> None:
    present = {k: v for k, v in types.items() if body.get(k) is not None}
    require_fields(body, present)


def query_time(request: Request, name: str) -> datetime | None:
    value = (request.query_params or {}).get(name)
    if value is None or value == "":
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError as error:
        raise MalformedRequest(f"{name} must be an ISO 8601 timestamp, got {value!r}") from error
    if moment.tzinfo is None:
        raise MalformedRequest(f"{name} needs a time zone (e.g. Z or +00:00)")
    return moment
