"""API Gateway's own answers (unknown route, missing key, throttled, timeout, function error) and
the template's GatewayResponses that customise them.

An Api's GatewayResponses map a response type to a status, literal headers (`'value'`, as API
Gateway writes them) and a body template per content type. The emulator renders the
`application/json` template with the few `$context` variables it knows; a type the Api does
not customise falls back to DEFAULT_4XX or DEFAULT_5XX, then to API Gateway's own
`{"message": ...}`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Response type -> (status, message), as API Gateway answers when nothing is customised.
BUILT_IN = {
    "MISSING_AUTHENTICATION_TOKEN": (403, "Missing Authentication Token"),
    "INVALID_API_KEY": (403, "Forbidden"),
    "THROTTLED": (429, "Too Many Requests"),
    "INTEGRATION_TIMEOUT": (504, "Endpoint request timed out"),
    # A Lambda proxy integration's error or unreadable answer has no type of its own: only
    # DEFAULT_5XX customises it.
    "DEFAULT_5XX": (502, "Internal server error"),
}


@dataclass(frozen=True)
class GatewayResponse:
    status: int | None = None  # None: the type's own status
    headers: Mapping[str, str] = field(default_factory=dict)
    templates: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


def parse(raw: Mapping[str, Any] | None) -> dict[str, GatewayResponse]:
    """An Api's GatewayResponses property (already resolved) as response type -> response."""
    responses = {}
    for response_type, spec in (raw or {}).items():
        spec = spec or {}
        headers = ((spec.get("ResponseParameters") or {}).get("Headers")) or {}
        status = spec.get("StatusCode")
        responses[str(response_type)] = GatewayResponse(
            status=int(status) if status is not None else None,
            # Only literal values ('text') can be rendered without a request mapping engine.
            headers={
                str(k): str(v)[1:-1]
                for k, v in headers.items()
                if isinstance(v, str) and len(v) >= 2 and v[0] == v[-1] == "'"
            },
            templates={str(k): str(v) for k, v in (spec.get("ResponseTemplates") or {}).items()},
        )
    return responses


def answer(responses: Mapping[str, GatewayResponse], response_type: str, request_id: str) -> Answer:
    status, message = BUILT_IN[response_type]
    default = "DEFAULT_4XX" if status < 500 else "DEFAULT_5XX"
    custom = responses.get(response_type) or responses.get(default) or GatewayResponse()
    template = custom.templates.get("application/json")
    if template is None:
        body = json.dumps({"message": message})
    else:
        body = _render(template, message, response_type, request_id)
    headers = {"Content-Type": "application/json", **custom.headers}
    return Answer(custom.status or status, headers, body.encode())


def _render(template: str, message: str, response_type: str, request_id: str) -> str:
    # Longest names first: $context.error.message is a prefix of ...messageString.
    variables = {
        "$context.error.messageString": json.dumps(message),
        "$context.error.message": message,
        "$context.error.responseType": response_type,
        "$context.requestId": request_id,
    }
    for name in sorted(variables, key=len, reverse=True):
        template = template.replace(name, variables[name])
    return template
