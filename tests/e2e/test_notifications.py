"""Notifications end to end, through the gateway like a user: subscribe, pay, receive.

The local push service decrypts each Web Push message with the subscription's private key and
checks its VAPID token (ES256, `aud` its own origin, `exp` within 24 hours, signed by the key
`GET /vapid-public-key` gives); the webhook receiver verifies each Standard Webhooks signature.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
import requests
from consim.adapters.subscriptions import SubscriptionStore
from consim.config import REPO_ROOT, settings
from support.notifications import push_service, webhook_receiver

from simulator.receivers import Behaviour

pytestmark = pytest.mark.e2e

FINAL = {"authorized", "declined", "failed"}
PAYMENTS_MEASURED = 20


class Api:
    def __init__(self) -> None:
        self.url = os.environ.get("API_URL") or settings().api_url
        self.session = requests.Session()
        self.session.headers["x-api-key"] = os.environ["API_KEY"]
        self.subscriptions: list[str] = []

    def call(self, method: str, path: str, body: dict | None = None, **headers) -> dict:
        response = self.session.request(
            method, self.url + path, json=body, headers=headers, timeout=30
        )
        assert response.status_code in (200, 201), (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        return response.json()

    def open_account(self) -> str:
        return self.call("POST", "/accounts", {"currency": "EUR", "limit": 1_000_000})["id"]

    def pay(self, account_id: str, amount: int = 700) -> dict:
        return self.call(
            "POST",
            "/payments",
            {"account_id": account_id, "amount": amount, "currency": "EUR"},
            **{"Idempotency-Key": uuid.uuid4().hex},
        )


@pytest.fixture(scope="module")
def api():
    return Api()


@pytest.fixture(autouse=True)
def unsubscribe_after(api):
    """Subscriptions made by a test are deleted after it, through the API, as a client would:
    their receivers stop with the test, and the notifier need not keep trying them."""
    yield
    for subscription_id in api.subscriptions:
        response = api.session.delete(f"{api.url}/subscriptions/{subscription_id}", timeout=30)
        assert response.status_code == 204, response.text
    api.subscriptions.clear()


@pytest.fixture(scope="module")
def vapid_key(api):
    return api.call("GET", "/vapid-public-key")["public_key"]


def subscribe(api, push, hooks, account_id: str, push_behaviour: Behaviour | None = None):
    browser = push.new_subscription(push_behaviour)
    pushed = api.call(
        "POST",
        "/subscriptions",
        {"kind": "webpush", "account_id": account_id, "subscription": browser.subscription()},
    )
    channel = hooks.new_channel()
    hooked = api.call(
        "POST",
        "/subscriptions",
        {"kind": "webhook", "account_id": account_id, "url": hooks.url(channel)},
    )
    hooks.trust(channel, hooked["secret"])
    api.subscriptions += [pushed["id"], hooked["id"]]
    return browser.id, pushed["id"], channel, hooked["id"]


def by_payment(inbox, channel: str) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for message in inbox.of(channel):
        seen.setdefault(message.body["payment_id"], []).append(message.body["status"])
    return seen


def finished(inbox, channel: str, payment_ids) -> bool:
    seen = by_payment(inbox, channel)
    return all(set(seen.get(p, [])) & FINAL for p in payment_ids)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def test_each_payment_gives_pending_then_its_outcome_once_to_push_and_webhook(api, vapid_key):
    account = api.open_account()
    with push_service(vapid_key) as push, webhook_receiver() as hooks:
        browser, _, channel, _ = subscribe(api, push, hooks, account)

        sent: dict[str, float] = {}
        for _ in range(PAYMENTS_MEASURED):
            began = time.time()
            payment = api.pay(account)
            sent[payment["id"]] = began
        push.inbox.wait_for(lambda _: finished(push.inbox, browser, sent), timeout=120)
        hooks.inbox.wait_for(lambda _: finished(hooks.inbox, channel, sent), timeout=120)

        for inbox, name in ((push.inbox, browser), (hooks.inbox, channel)):
            statuses = by_payment(inbox, name)
            assert set(statuses) == set(sent)
            for payment_id, seen in statuses.items():
                assert seen[0] == "pending" and len(seen) == 2 and seen[1] in FINAL, (
                    payment_id,
                    seen,
                )
            # The outcome events carry no amount: it comes from the payment's stream.
            assert {(m.body["amount"], m.body["currency"]) for m in inbox.of(name)} == {
                (700, "EUR")
            }
            assert inbox.refused == []
        latencies = {
            kind: {
                status: [
                    (m.received_at - sent[m.body["payment_id"]]) * 1000
                    for m in inbox.of(name)
                    if (m.body["status"] == "pending") == (status == "pending")
                ]
                for status in ("pending", "final")
            }
            for kind, inbox, name in (
                ("webpush", push.inbox, browser),
                ("webhook", hooks.inbox, channel),
            )
        }
    _report_latency(latencies)


def _report_latency(latencies: dict) -> None:
    summary = {
        kind: {
            status: {
                "count": len(values),
                "p50_ms": round(percentile(values, 0.50), 1),
                "p99_ms": round(percentile(values, 0.99), 1),
            }
            for status, values in statuses.items()
        }
        for kind, statuses in latencies.items()
    }
    out = REPO_ROOT / "reports" / "notification-latency.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(f"\nPOST /payments -> notification received: {json.dumps(summary)}")


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


def test_the_notifier_killed_mid_batch_still_notifies_each_status_once(api, vapid_key):
    account = api.open_account()
    store = SubscriptionStore(settings())
    with push_service(vapid_key) as push, webhook_receiver() as hooks:
        # The push service holds the first message; the worker is killed while it waits.
        browser, _, channel, hook_id = subscribe(
            api, push, hooks, account, Behaviour(hold_seconds=5.0, holds_left=1)
        )

        payment = api.pay(account)
        push.inbox.wait_for_arrivals(browser, 1, timeout=60)
        pending = [m for m in hooks.inbox.wait_for(lambda _: hooks.inbox.of(channel), 60)]
        wait_until(lambda: store.was_delivered(hook_id, pending[0].body["event_id"]))
        killed = requests.post(f"{api.url}/_emulator/functions/NotifierFunction/kill", timeout=10)
        assert killed.status_code == 200 and killed.json()["killed_pids"], killed.text

        ids = [payment["id"]]
        push.inbox.wait_for(lambda _: finished(push.inbox, browser, ids), timeout=120)
        hooks.inbox.wait_for(lambda _: finished(hooks.inbox, channel, ids), timeout=120)

        assert by_payment(push.inbox, browser)[payment["id"]] == ["pending", "authorized"]
        assert by_payment(hooks.inbox, channel)[payment["id"]] == ["pending", "authorized"]
        assert push.inbox.arrivals[browser] == 3  # the held one, never accepted, then two


def test_a_payment_made_like_curl_is_shown_by_the_listening_receivers(api):
    """`python -m simulator.receivers` subscribes both kinds and prints what arrives."""
    import subprocess
    import sys

    account = api.open_account()
    listener = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator.receivers",
            "--account-id",
            account,
            "--api-url",
            api.url,
            "--count",
            "4",
            "--timeout",
            "120",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert listener.stdout.readline().startswith("listening:")  # subscribed by now
        payment = api.pay(account)
        out, err = listener.communicate(timeout=180)
    finally:
        listener.kill()

    lines = [line.split() for line in out.splitlines()]
    shown = sorted((words[1], words[2]) for words in lines if payment["id"] in words)
    assert shown == [
        ("webhook", "authorized"),
        ("webhook", "pending"),
        ("webpush", "authorized"),
        ("webpush", "pending"),
    ], out + err
    assert "refused" not in out
