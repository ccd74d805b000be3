"""Subscription validation, the notification body and how answers are judged."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from consim.domain.errors import InvalidRequest
from consim.domain.notifications import (
    DeliveryVerdict,
    InvalidSubscription,
    Notification,
    SubscriptionKind,
    judge_response,
    notification_from_envelope,
    parse_retry_after,
    parse_subscription_request,
    status_of,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

pytestmark = pytest.mark.unit


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def browser_keys() -> dict[str, str]:
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {"p256dh": b64url(point), "auth": b64url(bytes(range(16)))}


def push_body(**changes) -> dict:
    body = {
        "kind": "webpush",
        "account_id": "acc-1",
        "subscription": {"endpoint": "https://push.example/abc", "keys": browser_keys()},
    }
    body.update(changes)
    return body


def test_a_browser_subscription_is_accepted():
    request = parse_subscription_request(push_body(), allow_loopback_http=False)

    assert request.kind is SubscriptionKind.WEBPUSH
    assert request.target.key == "account#acc-1"
    assert request.push.endpoint == "https://push.example/abc"


def test_a_webhook_on_a_payment_is_accepted():
    request = parse_subscription_request(
        {"kind": "webhook", "payment_id": "p-1", "url": "https://hooks.example/in"}, False
    )

    assert request.kind is SubscriptionKind.WEBHOOK
    assert request.target.key == "payment#p-1"
    assert request.url == "https://hooks.example/in"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("not an object", "body"),
        ({"kind": "sms", "account_id": "a"}, "kind"),
        ({"kind": "webhook", "url": "https://h.example"}, "account_id"),
        (
            {"kind": "webhook", "account_id": "a", "payment_id": "p", "url": "https://h.example"},
            "account_id",
        ),
        ({"kind": "webhook", "account_id": "", "url": "https://h.example"}, "account_id"),
        ({"kind": "webhook", "account_id": "a", "url": "ftp://h.example/x"}, "url"),
        ({"kind": "webhook", "account_id": "a", "url": "https://"}, "url"),
        ({"kind": "webhook", "account_id": "a"}, "url"),
    ],
)
def test_malformed_requests_name_the_field(body, field):
    with pytest.raises(InvalidSubscription) as caught:
        parse_subscription_request(body, allow_loopback_http=False)

    assert caught.value.field == field
    assert isinstance(caught.value, InvalidRequest)  # the API maps it like every bad request


def test_p256dh_must_be_a_point_on_the_curve():
    keys = browser_keys()
    point = bytearray(base64.urlsafe_b64decode(keys["p256dh"] + "=="))
    point[-1] ^= 1  # still 65 bytes and 0x04, but y no longer solves the curve's equation
    body = push_body(
        subscription={
            "endpoint": "https://p.example/1",
            "keys": {**keys, "p256dh": b64url(bytes(point))},
        }
    )

    with pytest.raises(InvalidSubscription) as caught:
        parse_subscription_request(body, False)

    assert caught.value.field == "subscription.keys.p256dh"


@pytest.mark.parametrize(
    "p256dh",
    [
        "",  # empty
        "!!!not-base64!!!",
        b64url(b"\x04" + bytes(63)),  # too short
        b64url(b"\x02" + bytes(32)),  # compressed form
    ],
)
def test_p256dh_in_other_shapes_is_refused(p256dh):
    keys = {**browser_keys(), "p256dh": p256dh}
    with pytest.raises(InvalidSubscription) as caught:
        parse_subscription_request(
            push_body(subscription={"endpoint": "https://p.example/1", "keys": keys}), False
        )
    assert caught.value.field == "subscription.keys.p256dh"


@pytest.mark.parametrize("length", [0, 15, 17, 32])
def test_auth_must_be_16_bytes(length):
    keys = {**browser_keys(), "auth": b64url(bytes(length)) or "x"}
    with pytest.raises(InvalidSubscription) as caught:
        parse_subscription_request(
            push_body(subscription={"endpoint": "https://p.example/1", "keys": keys}), False
        )
    assert caught.value.field == "subscription.keys.auth"


@pytest.mark.parametrize(
    "endpoint",
    ["http://127.0.0.1:8080/push/1", "http://localhost/push/1", "http://[::1]:9000/p"],
)
def test_loopback_http_endpoints_only_where_allowed(endpoint):
    body = push_body(subscription={"endpoint": endpoint, "keys": browser_keys()})

    with pytest.raises(InvalidSubscription):
        parse_subscription_request(body, allow_loopback_http=False)
    assert parse_subscription_request(body, allow_loopback_http=True).push.endpoint == endpoint


@pytest.mark.parametrize("endpoint", ["http://10.0.0.1/push", "http://push.example/1"])
def test_plain_http_elsewhere_is_refused_even_in_the_native_stack(endpoint):
    body = push_body(subscription={"endpoint": endpoint, "keys": browser_keys()})
    with pytest.raises(InvalidSubscription) as caught:
        parse_subscription_request(body, allow_loopback_http=True)
    assert caught.value.field == "subscription.endpoint"


def envelope(event_type: str, **data) -> dict:
    return {
        "event_id": "e-1",
        "type": event_type,
        "stream_id": "payment-p-1",
        "version": 2,
        "occurred_at": "2026-12-03T18:00:00+00:00",
        "data": {"payment_id": "p-1", "account_id": "a-1", **data},
    }


@pytest.mark.parametrize(
    ("event_type", "status"),
    [
        ("PaymentRequested", "pending"),
        ("PaymentAuthorized", "authorized"),
        ("PaymentDeclined", "declined"),
        ("PaymentFailed", "failed"),
        ("FundsReserved", None),
        ("AccountOpened", None),
    ],
)
def test_status_changes(event_type, status):
    assert status_of(event_type) == status


def test_the_notification_body_has_exactly_the_contract_fields():
    note = notification_from_envelope(
        envelope("PaymentAuthorized", provider="default"), 1250, "EUR"
    )

    assert note.body() == {
        "payment_id": "p-1",
        "account_id": "a-1",
        "amount": 1250,
        "currency": "EUR",
        "status": "authorized",
        "event_id": "e-1",
        "occurred_at": "2026-12-03T18:00:00+00:00",
    }
    assert note.urgency == "high"


def test_a_non_status_event_makes_no_notification():
    with pytest.raises(ValueError):
        notification_from_envelope(envelope("FundsReserved"), 1, "EUR")


def test_the_push_topic_is_short_url_safe_and_per_payment():
    uuid_note = Notification(
        "0b5f3c1e-7a51-4d6e-9b1a-2f0e9c6d8a77", "a", 1, "EUR", "pending", "e", "t"
    )
    odd_note = Notification(
        "payment/with spaces and a very long identifier indeed", "a", 1, "EUR", "pending", "e", "t"
    )

    assert uuid_note.topic == "0b5f3c1e7a514d6e9b1a2f0e9c6d8a77"
    assert len(odd_note.topic) <= 32 and odd_note.topic.replace("-", "").replace("_", "").isalnum()
    assert uuid_note.urgency == "normal"


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (201, DeliveryVerdict.DELIVERED),
        (204, DeliveryVerdict.DELIVERED),
        (404, DeliveryVerdict.GONE),
        (410, DeliveryVerdict.GONE),
        (429, DeliveryVerdict.RETRY),
        (500, DeliveryVerdict.RETRY),
        (503, DeliveryVerdict.RETRY),
        (400, DeliveryVerdict.REJECTED),
        (401, DeliveryVerdict.REJECTED),
        (413, DeliveryVerdict.REJECTED),
    ],
)
def test_answers_are_judged(status, verdict):
    assert judge_response(status).verdict is verdict


def test_retry_after_in_seconds_or_as_a_date():
    now = datetime(2026, 12, 3, 18, 0, 0, tzinfo=UTC)

    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Thu, 03 Dec 2026 18:00:30 GMT", now) == 30.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
