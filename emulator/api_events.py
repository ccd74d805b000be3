"""API Gateway REST (v1) proxy events from HTTP requests, and proxy answers back to HTTP; no I/O.

The shape follows what API Gateway sends a Lambda proxy integration (and what
`sam local generate-event apigateway aws-proxy` prints); tests compare the two.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from emulator.intrinsics import ACCOUNT_ID
from emulator.routes import RouteMatch


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def _single_and_multi(pairs: Iterable[tuple[str, str]]) -> tuple[dict | None, dict | None]:
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        multi.setdefault(key, []).append(value)
    if not multi:
        return None, None
    return {k: v[-1] for k, v in multi.items()}, multi


def _body(raw: bytes) -> tuple[str | None, bool]:
    if not raw:
        return None, False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        # API Gateway base64-encodes bodies of its binary media types; locally anything that
        # is not text is treated as binary.
        return base64.b64encode(raw).decode(), True


def proxy_event(
    request: HttpRequest,
    match: RouteMatch,
    request_id: str,
    api_key: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    now = time.time() if now is None else now
    api = match.route.event
    headers, multi_headers = _single_and_multi(request.headers)
    query, multi_query = _single_and_multi(request.query)
    body, is_base64 = _body(request.body)
    user_agent = (headers or {}).get("User-Agent") or (headers or {}).get("user-agent")
    return {
        "resource": api.path,
        "path": request.path,
        "httpMethod": request.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": match.path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": api.api_id,
            "resourceId": api.name,
            "resourcePath": api.path,
            "httpMethod": request.method,
            "requestId": request_id,
            "extendedRequestId": request_id,
            "requestTime": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now * 1000),
            "path": f"/{api.stage}{request.path}",
            "stage": api.stage,
            "protocol": request.protocol,
            "domainName": (headers or {}).get("Host") or (headers or {}).get("host"),
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "accessKey": None,
                "apiKey": api_key,
                "apiKeyId": api_key and f"key-{api_key[:8]}",
                "sourceIp": request.source_ip,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": user_agent,
                "user": None,
            },
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def http_response(answer: Any) -> HttpResponse | None:
    """A function's proxy answer as HTTP; None for one API Gateway cannot read (it answers its
    own 502 instead)."""
    if not isinstance(answer, dict) or "statusCode" not in answer:
        return None
    try:
        status = int(answer["statusCode"])
        headers: list[tuple[str, str]] = []
        single = answer.get("headers") or {}
        multi = answer.get("multiValueHeaders") or {}
        for name, values in multi.items():
            headers.extend((name, str(v)) for v in values)
        for name, value in single.items():
            if name not in multi:
                headers.append((name, str(value)))
        body = answer.get("body")
        if body is None:
            raw = b""
        elif answer.get("isBase64Encoded"):
            raw = base64.b64decode(body)
        else:
            raw = (body if isinstance(body, str) else json.dumps(body)).encode()
    except (TypeError, ValueError, AttributeError):
        return None
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return HttpResponse(status, headers, raw)
