"""The subscription routes through Chalice's test client, on the stack's Postgres and DynamoDB."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from consim.adapters.subscriptions import SubscriptionStore
from consim.config import REPO_ROOT, settings
from consim.domain.notifications import Target
from support.api import api_module
from support.notifications import register_client

from simulator.receivers import PushService

pytestmark = pytest.mark.integration

API_DIR = REPO_ROOT / "functions" / "api"


def api_app():
    """The API's Chalice app, loaded once for every test module (a second load would register
    the same blueprint on a second app, which Chalice refuses as duplicate routes)."""
    return api_module().app


@pytest.fixture(scope="module")
def http():
    from chalice.test import Client

    with Client(api_app()) as client:
        yield client.http


@pytest.fixture(autouse=True)
def loopback_allowed(monkeypatch):
    monkeypatch.setenv("CONSIM_ALLOW_LOOPBACK_PUSH", "1")


def call(http, method: str, path: str, key: str, body=None, **headers):
    response = getattr(http, method)(
        path,
        headers={"x-api-key": key, "content-type": "application/json", **headers},
        body=json.dumps(body) if body is not None else None,
    )
    return response.status_code, (response.json_body if response.body else None), response.headers


@pytest.fixture(scope="module")
def alice(http):
    key, client = register_client()
    status, account, _ = call(http, "post", "/accounts", key, {"currency": "EUR", "limit": 10_000})
    assert status == 201, account
    status, payment, _ = call(
        http,
        "post",
        "/payments",
        key,
        {"account_id": account["id"], "amount": 100, "currency": "EUR"},
        **{"Idempotency-Key": uuid.uuid4().hex},
    )
    assert status == 201, payment
    yield {"key": key, "client": client, "account": account["id"], "payment": payment["id"]}

    # The stack's notifier would keep trying these made-up endpoints: leave none behind.
    store = SubscriptionStore(settings())
    for target in (Target("account", account["id"]), Target("payment", payment["id"])):
        for sub in store.following(target):
            store.remove(sub.id)


@pytest.fixture(scope="module")
def mallory():
    key, client = register_client()
    return {"key": key, "client": client}


def browser_subscription() -> dict:
    return PushService("http://127.0.0.1:9").new_subscription().subscription()


def test_a_browser_subscribes_to_its_account(http, alice):
    sub = browser_subscription()

    status, body, headers = call(
        http,
        "post",
        "/subscriptions",
        alice["key"],
        {"kind": "webpush", "account_id": alice["account"], "subscription": sub},
    )

    assert status == 201, body
    assert body["kind"] == "webpush" and body["account_id"] == alice["account"]
    assert headers["Location"] == f"/subscriptions/{body['id']}"
    stored = SubscriptionStore(settings()).get(body["id"])
    assert stored.client_id == alice["client"]
    assert stored.push.endpoint == sub["endpoint"]
    following = SubscriptionStore(settings()).following(Target("account", alice["account"]))
    assert body["id"] in {s.id for s in following}


def test_a_webhook_on_a_payment_gets_its_secret_once(http, alice):
    status, body, _ = call(
        http,
        "post",
        "/subscriptions",
        alice["key"],
        {"kind": "webhook", "payment_id": alice["payment"], "url": "https://127.0.0.1:9/hooks/in"},
    )

    assert status == 201, body
    assert body["secret"].startswith("whsec_")
    assert len(base64.b64decode(body["secret"][len("whsec_") :])) == 32
    status, again, _ = call(http, "get", f"/subscriptions/{body['id']}", alice["key"])
    assert (
        status == 200 and "secret" not in again and again["url"] == "https://127.0.0.1:9/hooks/in"
    )


@pytest.mark.parametrize("target", ["account", "payment"])
def test_another_clients_account_or_payment_cannot_be_followed(http, alice, mallory, target):
    status, body, headers = call(
        http,
        "post",
        "/subscriptions",
        mallory["key"],
        {"kind": "webhook", f"{target}_id": alice[target], "url": "https://127.0.0.1:9/evil"},
    )

    assert status == 404
    assert headers["Content-Type"] == "application/problem+json"
    assert body["type"].endswith(f"{target}-not-found")


def test_an_unknown_account_is_404(http, alice):
    status, body, _ = call(
        http,
        "post",
        "/subscriptions",
        alice["key"],
        {"kind": "webhook", "account_id": "no-such-account", "url": "https://127.0.0.1:9/h"},
    )
    assert status == 404, body


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {
                "keys": {
                    "p256dh": base64.urlsafe_b64encode(b"\x04" + bytes(64)).decode(),
                    "auth": "AAAAAAAAAAAAAAAAAAAAAA",
                }
            },
            "p256dh",
        ),
        ({"keys": {"p256dh": None, "auth": "AAAAAAAAAAAAAAAAAAAAAA"}}, "p256dh"),
        ({"endpoint": "http://push.example/1"}, "endpoint"),
    ],
)
def test_an_invalid_browser_subscription_is_a_problem(http, alice, change, field):
    sub = {**browser_subscription(), **change}

    status, body, headers = call(
        http,
        "post",
        "/subscriptions",
        alice["key"],
        {"kind": "webpush", "account_id": alice["account"], "subscription": sub},
    )

    assert status == 422
    assert headers["Content-Type"] == "application/problem+json"
    assert field in body["detail"]


def test_no_key_no_subscription(http, alice):
    response = http.post(
        "/subscriptions",
        headers={"content-type": "application/json"},
        body=json.dumps(
            {"kind": "webhook", "account_id": alice["account"], "url": "https://127.0.0.1:9/h"}
        ),
    )
    assert response.status_code == 403


def test_delete_is_for_the_owner_only(http, alice, mallory):
    _, body, _ = call(
        http,
        "post",
        "/subscriptions",
        alice["key"],
        {"kind": "webhook", "account_id": alice["account"], "url": "https://127.0.0.1:9/h"},
    )

    assert call(http, "delete", f"/subscriptions/{body['id']}", mallory["key"])[0] == 404
    assert call(http, "delete", f"/subscriptions/{body['id']}", alice["key"])[0] == 204
    assert call(http, "get", f"/subscriptions/{body['id']}", alice["key"])[0] == 404
    assert call(http, "delete", f"/subscriptions/{body['id']}", alice["key"])[0] == 404


def test_browsers_get_the_vapid_public_key(http, alice):
    status, body, _ = call(http, "get", "/vapid-public-key", alice["key"])

    assert status == 200
    point = base64.urlsafe_b64decode(body["public_key"] + "==")
    assert len(point) == 65 and point[0] == 4
