"""The API's Chalice app in-process, with clients registered in the stack's clients table."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import uuid
from functools import cache
from types import ModuleType

from consim.adapters import dynamodb
from consim.config import REPO_ROOT, settings

API_DIR = REPO_ROOT / "functions" / "api"


@cache
def api_module() -> ModuleType:
    """functions/api/app.py under a name of its own (other functions have an `app` module too)."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ.setdefault("AWS_DEFAULT_REGION", settings().aws_region)
    if str(API_DIR) not in sys.path:
        sys.path.insert(0, str(API_DIR))
    spec = importlib.util.spec_from_file_location("consim_api_app", API_DIR / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def new_client() -> tuple[str, str]:
    """Register a fresh API client; return (api_key, client_id)."""
    key, client = f"test-{uuid.uuid4().hex}", f"client-{uuid.uuid4().hex[:12]}"
    dynamodb.client().put_item(
        TableName=settings().table("clients"),
        Item={"api_key": {"S": key}, "client_id": {"S": client}},
    )
    return key, client


def body(response) -> dict:
    return json.loads(response.body)


class LambdaContext:
    """Enough of Lambda's context object for Powertools' decorators."""

    function_name = "test-function"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:test-function"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 10_000
