"""The simulated provider in-process: API Gateway events to its handler, or a small HTTP server
in front of both instances for code that calls it over HTTP (the processor)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
from consim.config import REPO_ROOT, settings

PROVIDER_DIR = REPO_ROOT / "functions" / "provider"
ADMIN = {"x-admin-token": settings().provider_admin_token}
# The instances the tests run, named apart from the stack's own `default` and `fallback`: the
# stack under test (`make test`) runs its live processor and providers on the same database, and
# neither their traffic nor the tests' knobs and ledger purges may reach the other side.
DEFAULT = "it-default"
FALLBACK = "it-fallback"
FEES_BPS = {DEFAULT: 150, FALLBACK: 300}
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
os.environ.setdefault("PROVIDER_POOL_SIZE", "8")
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
    """Default knobs (no latency, no failures) plus the given ones, and an empty ledger, once
    requests left over by an earlier test (a simulated timeout still sleeping) are done."""
    deadline = time.monotonic() + 30
    while ledger(module, name)["in_flight"]:
        assert time.monotonic() < deadline, f"{name}: requests still in flight after 30 s"
        time.sleep(0.05)
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


@contextlib.contextmanager
def provider_server(workers: int = 8) -> Iterator[str]:
    """Serve both instances over HTTP on a free loopback port from `workers` processes, each
    one request at a time like a Lambda execution environment; yields the base URL
    (`http://127.0.0.1:<port>/providers`), the shape of settings().provider_url."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    env = {**os.environ, "PROVIDER_POOL_SIZE": "2"}
    worker = Path(__file__).with_name("provider_worker.py")
    process = subprocess.Popen(
        [sys.executable, str(worker), str(listener.fileno()), str(workers)],
        pass_fds=[listener.fileno()],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
        start_new_session=True,  # its own process group: the forked workers go with it
    )
    try:
        line = process.stdout.readline()
        assert line.strip() == "ready", f"the provider workers did not start: {line!r}"
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/providers"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        process.stdout.close()
        listener.close()
