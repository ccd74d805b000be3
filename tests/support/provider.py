"""The simulated provider in-process: API Gateway events to its handler, or a small HTTP server
in front of both instances for code that calls it over HTTP (the processor)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import psycopg
from consim.config import REPO_ROOT, settings

PROVIDER_DIR = REPO_ROOT / "functions" / "provider"
ADMIN = {"x-admin-token": settings().provider_admin_token}
FEES_BPS = {"default": 150, "fallback": 300}
DEFAULT_KNOBS = {
    "latency_distribution": "fixed",
    "latency_p50_ms": 0,
    "latency_p99_ms": 0,
    "failure_rate": 0,
    "decline_rate": 0,
    "decline_amount_suffix": "",
    "timeout_rate": 0,
    "timeout_ms": 5000,
    "max_concurrency": 20,
    "outage": False,
}

# Tests serve many requests at once from one process; a Lambda worker serves one.
os.environ.setdefault("PROVIDER_POOL_SIZE", "64")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")


def migrated_url() -> str:
    """The stack's database URL with the provider schema present (its DDL is idempotent)."""
    url = settings().database_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(Path(REPO_ROOT / "infra" / "migrations" / "0002_provider.sql").read_text())
    return url


_loading = threading.Lock()


def load_provider(name: str) -> ModuleType:
    """A fresh copy of functions/provider/app.py configured as instance `name`, as Lambda would
    import it with that instance's environment.

    Like a Lambda execution environment, a copy serves one request at a time (the resolver
    keeps the current event in a global): concurrent callers each need their own copy.
    """
    with _loading:
        return _load(name)


def _load(name: str) -> ModuleType:
    if str(PROVIDER_DIR) not in sys.path:
        sys.path.insert(0, str(PROVIDER_DIR))
    saved = {key: os.environ.get(key) for key in ("PROVIDER_NAME", "PROVIDER_FEE_BPS")}
    os.environ["PROVIDER_NAME"] = name
    os.environ["PROVIDER_FEE_BPS"] = str(FEES_BPS[name])
    try:
        spec = importlib.util.spec_from_file_location(
            f"provider_app_{name}", PROVIDER_DIR / "app.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return module


class LambdaContext:
    function_name = "provider"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:provider"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def api_event(
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event, as the `/providers/<name>/{proxy+}` route sends."""
    parts = path.strip("/").split("/")
    headers = {"content-type": "application/json", **(headers or {})}
    return {
        "resource": f"/providers/{parts[1]}/{{proxy+}}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": {"proxy": "/".join(parts[2:])},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": f"/providers/{parts[1]}/{{proxy+}}",
            "httpMethod": method,
            "path": f"/local{path}",
            "stage": "local",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": None if body is None else (body if isinstance(body, str) else json.dumps(body)),
        "isBase64Encoded": False,
    }


def call(module: ModuleType, method: str, path: str, body: Any = None, **kwargs: Any):
    """(status, parsed JSON body) of one request to the provider's handler."""
    response = module.handler(api_event(method, path, body, **kwargs), LambdaContext())
    payload = response.get("body")
    return response["statusCode"], json.loads(payload) if payload else None


def reset(module: ModuleType, name: str, **knobs: Any) -> None:
    """Default knobs (no latency, no failures) plus the given ones, and an empty ledger."""
    status, body = call(
        module, "PUT", f"/providers/{name}/admin/knobs", {**DEFAULT_KNOBS, **knobs}, headers=ADMIN
    )
    assert status == 200, body
    status, body = call(module, "POST", f"/providers/{name}/admin/purge", headers=ADMIN)
    assert status == 200, body


def set_knobs(module: ModuleType, name: str, **knobs: Any) -> None:
    status, body = call(module, "PUT", f"/providers/{name}/admin/knobs", knobs, headers=ADMIN)
    assert status == 200, body


def ledger(module: ModuleType, name: str) -> dict[str, int]:
    status, body = call(module, "GET", f"/providers/{name}/admin/ledger", headers=ADMIN)
    assert status == 200, body
    return body


class Environments:
    """The execution environments of one instance: a free copy serves each request, a new one
    is loaded when all are busy (a cold start)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._free: list[ModuleType] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def acquire(self) -> Iterator[ModuleType]:
        with self._lock:
            module = self._free.pop() if self._free else None
        module = module or load_provider(self.name)
        try:
            yield module
        finally:
            with self._lock:
                self._free.append(module)


@contextlib.contextmanager
def provider_server(names: tuple[str, ...] = ("default", "fallback")) -> Iterator[str]:
    """Serve the instances over HTTP on a free loopback port; yields the base URL
    (`http://127.0.0.1:<port>/providers`), the shape of settings().provider_url."""
    instances = {name: Environments(name) for name in names}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            url = urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length).decode() if length else None
            module = instances.get(parts[1]) if len(parts) > 1 else None
            if module is None:
                status, payload = 404, json.dumps({"error": "no_such_route"})
            else:
                event = api_event(
                    self.command,
                    url.path,
                    body,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    query=dict(parse_qsl(url.query)),
                )
                with module.acquire() as environment:
                    response = environment.handler(event, LambdaContext())
                status, payload = response["statusCode"], response.get("body") or ""
            data = payload.encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a simulated timeout)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/providers"
    finally:
        server.shutdown()
        server.server_close()
