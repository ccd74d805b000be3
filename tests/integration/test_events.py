"""Every sample event in events/ through the running emulator's Lambda Invoke API.

The samples carry fixed ids and a placeholder API key, as `sam local invoke` users would edit
them. Here they are rewritten for the stack under test first: its API key, an account and a
payment that exist, fresh idempotency keys, so each answers as it would in a real session
(201 for a create, 200 for a read, an empty batchItemFailures for a Kafka batch).
`make invoke` runs the same runtime in-process: one file goes through that path too.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from consim.config import REPO_ROOT, settings

pytestmark = pytest.mark.integration

EVENTS_DIR = REPO_ROOT / "events"
EVENT_FILES = sorted(EVENTS_DIR.glob("*.json"))

# File name prefix -> the template's logical id (longest prefix wins).
FUNCTIONS = {
    "api": "ApiFunction",
    "processor": "ProcessorFunction",
    "projector": "ProjectorFunction",
    "notifier": "NotifierFunction",
    "relay": "RelayFunction",
    "provider-default": "ProviderDefaultFunction",
    "provider-fallback": "ProviderFallbackFunction",
}

# The fixed values the samples carry, replaced by the stack's own.
SAMPLE_API_KEY = "ck_sample_5f2b8e1d9c4a7f3e"
SAMPLE_ACCOUNT = "acc-7f3c9a21"
SAMPLE_PAYMENT = "5d1b7c2e-8a4f-4e1b-9c3d-2f6a8b0e4d17"
SAMPLE_SUBSCRIPTION = "sub-0b6e42d9a1c3"
SAMPLE_IDEMPOTENCY_KEY = "order-2026-12-03-000417"

# What a sensible answer is, per sample: API files by status, Kafka files by an empty
# batchItemFailures (checked below), the schedule by not failing.
EXPECTED_STATUS = {
    "api-accounts-create.json": {201},
    "api-payments-create.json": {201},
    "api-subscriptions-create-webhook.json": {201},
    "api-subscriptions-create-webpush.json": {201},
    "api-subscriptions-delete.json": {204},
    "provider-default-payment.json": {200, 201},
    "provider-fallback-payment.json": {200, 201},
}
DEFAULT_API_STATUS = {200}
KAFKA_PREFIXES = ("processor-", "projector-", "notifier-")


def function_for(path: Path) -> str:
    prefixes = [p for p in FUNCTIONS if path.stem.startswith(p + "-")]
    assert prefixes, f"{path.name}: no function for this name (expected <function>-<case>.json)"
    return FUNCTIONS[max(prefixes, key=len)]


def invoke(function: str, event: Any) -> tuple[Any, str | None]:
    """The Invoke API's answer: (payload, X-Amz-Function-Error or None)."""
    url = f"{settings().api_url}/2015-03-31/functions/{function}/invocations"
    request = urllib.request.Request(
        url, data=json.dumps(event).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read() or b"null"), response.headers.get(
                "X-Amz-Function-Error"
            )
    except urllib.error.HTTPError as error:
        pytest.fail(f"Invoke API answered {error.code}: {error.read()[:500]!r}")


def rewrite(event: Any, replacements: dict[str, str]) -> Any:
    """The sample with its fixed values replaced, inside base64 Kafka record values too."""

    def text(value: str) -> str:
        for old, new in replacements.items():
            value = value.replace(old, new)
        return value

    if isinstance(event, dict) and "records" in event and "eventSource" in event:
        for records in event["records"].values():
            for record in records:
                for field in ("key", "value"):
                    if record.get(field) is not None:
                        raw = base64.b64decode(record[field]).decode()
                        record[field] = base64.b64encode(text(raw).encode()).decode()
        return event
    return json.loads(text(json.dumps(event)))


def api_answer(function: str, event: Any) -> dict:
    payload, error = invoke(function, event)
    assert error is None, f"function error: {payload}"
    assert isinstance(payload, dict) and "statusCode" in payload, payload
    return payload


def api_body(answer: dict) -> Any:
    return json.loads(answer["body"]) if answer.get("body") else None


def last_json_document(text: str) -> Any:
    """The function's answer: the CLI prints it last, after what the function logged."""
    decoder, position, last = json.JSONDecoder(), 0, None
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        last, position = decoder.raw_decode(text, position)
    return last


def load(name: str) -> Any:
    return json.loads((EVENTS_DIR / name).read_text())


@pytest.fixture(scope="module")
def world() -> dict[str, str]:
    """An account, a payment on it, and a subscription on a second account, made through the
    same sample events; the values the other samples are rewritten to."""
    api_key = os.environ.get("API_KEY")
    assert api_key, "API_KEY is not set: run under `make test` or eval $(make -s env)"
    base = {SAMPLE_API_KEY: api_key}

    def create(name: str, extra: dict[str, str]) -> dict:
        answer = api_answer("ApiFunction", rewrite(load(name), {**base, **extra}))
        assert answer["statusCode"] == 201, answer
        return api_body(answer)

    account = f"acc-{uuid.uuid4().hex[:12]}"
    create("api-accounts-create.json", {SAMPLE_ACCOUNT: account})
    payment = create(
        "api-payments-create.json",
        {SAMPLE_ACCOUNT: account, SAMPLE_IDEMPOTENCY_KEY: f"evt-{uuid.uuid4().hex}"},
    )["id"]
    # Subscriptions follow a second account, so the Kafka samples (on the first) notify no one.
    quiet_account = f"acc-{uuid.uuid4().hex[:12]}"
    create("api-accounts-create.json", {SAMPLE_ACCOUNT: quiet_account})
    subscription = create("api-subscriptions-create-webhook.json", {SAMPLE_ACCOUNT: quiet_account})[
        "id"
    ]
    provider_payment = str(uuid.uuid4())
    answer = api_answer(
        "ProviderDefaultFunction",
        rewrite(load("provider-default-payment.json"), {SAMPLE_PAYMENT: provider_payment}),
    )
    assert answer["statusCode"] in (200, 201), answer
    return {
        "api_key": api_key,
        "account": account,
        "quiet_account": quiet_account,
        "payment": payment,
        "subscription": subscription,
        "provider_payment": provider_payment,
    }


def replacements_for(path: Path, world: dict[str, str]) -> dict[str, str]:
    replacements = {
        SAMPLE_API_KEY: world["api_key"],
        SAMPLE_ACCOUNT: world["account"],
        SAMPLE_PAYMENT: world["payment"],
        SAMPLE_SUBSCRIPTION: world["subscription"],
        SAMPLE_IDEMPOTENCY_KEY: f"evt-{uuid.uuid4().hex}",
    }
    name = path.name
    if name == "api-accounts-create.json":
        replacements[SAMPLE_ACCOUNT] = f"acc-{uuid.uuid4().hex[:12]}"
    elif name.startswith("api-subscriptions-create"):
        replacements[SAMPLE_ACCOUNT] = world["quiet_account"]
    elif name in ("provider-default-payment.json", "provider-fallback-payment.json"):
        replacements[SAMPLE_PAYMENT] = str(uuid.uuid4())
    elif name.startswith("provider-default-payment-get"):
        replacements[SAMPLE_PAYMENT] = world["provider_payment"]
    return replacements


def test_every_function_has_samples():
    names = {function_for(p) for p in EVENT_FILES}
    assert names == set(FUNCTIONS.values())


@pytest.mark.parametrize("path", EVENT_FILES, ids=[p.name for p in EVENT_FILES])
def test_sample_event_runs_in_the_emulator(path: Path, world: dict[str, str]):
    function = function_for(path)
    event = json.loads(path.read_text())
    replacements = replacements_for(path, world)

    if path.name == "api-subscriptions-delete.json":
        # Its own subscription to delete, so that the get sample still finds the shared one.
        created = api_answer(
            "ApiFunction",
            rewrite(
                load("api-subscriptions-create-webhook.json"),
                {
                    SAMPLE_API_KEY: world["api_key"],
                    SAMPLE_ACCOUNT: world["quiet_account"],
                },
            ),
        )
        replacements[SAMPLE_SUBSCRIPTION] = api_body(created)["id"]

    payload, error = invoke(function, rewrite(event, replacements))
    assert error is None, f"{path.name}: function error {payload}"

    if path.name.startswith(KAFKA_PREFIXES):
        # A handler that reports nothing failed may also leave batchItemFailures out.
        assert isinstance(payload, dict), payload
        assert payload.get("batchItemFailures", []) == [], payload
    elif path.name.startswith("relay-"):
        assert payload is None or isinstance(payload, dict), payload
    else:
        assert isinstance(payload, dict) and "statusCode" in payload, payload
        expected = EXPECTED_STATUS.get(path.name, DEFAULT_API_STATUS)
        assert payload["statusCode"] in expected, f"{path.name}: {payload}"
        if path.name.startswith("api-subscriptions-create"):
            # Leave nothing subscribed behind.
            delete = rewrite(
                load("api-subscriptions-delete.json"),
                {
                    SAMPLE_API_KEY: world["api_key"],
                    SAMPLE_SUBSCRIPTION: api_body(payload)["id"],
                },
            )
            assert api_answer("ApiFunction", delete)["statusCode"] == 204


def test_make_invoke_runs_a_sample_in_process():
    """What `make invoke FN=ApiFunction EVENT=events/api-health.json` runs."""
    result = subprocess.run(
        [sys.executable, "-m", "emulator", "invoke", "ApiFunction", "events/api-health.json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    answer = last_json_document(result.stdout)
    assert answer["statusCode"] == 200, answer
    assert json.loads(answer["body"])["status"] == "ok"
