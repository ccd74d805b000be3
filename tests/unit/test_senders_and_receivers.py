"""Our Web Push and webhook senders against the local receivers (in-process HTTP, no stack)."""

from __future__ import annotations

import json
import time

import pytest
from consim.adapters.webhooks import WebhookSender, new_secret, signed_headers
from consim.adapters.webpush import WebPushSender, application_server_key, load_vapid
from consim.config import Settings
from consim.domain.notifications import DeliveryVerdict, PushKeys
from py_vapid import Vapid

from simulator.receivers import (
    BackgroundServer,
    Behaviour,
    PushService,
    VapidError,
    WebhookReceiver,
    free_port,
    verify_vapid,
)

pytestmark = pytest.mark.unit

SUBJECT = "mailto:test@consim.example"


@pytest.fixture
def vapid(tmp_path, monkeypatch):
    monkeypatch.setenv("CONSIM_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("VAPID_PRIVATE_KEY", raising=False)
    return load_vapid(Settings())


@pytest.fixture
def push_service(vapid):
    port = free_port()
    service = PushService(
        f"http://127.0.0.1:{port}", expected_vapid_key=application_server_key(vapid)
    )
    with BackgroundServer(service.app(), port):
        yield service


@pytest.fixture
def hooks():
    port = free_port()
    receiver = WebhookReceiver(f"http://127.0.0.1:{port}")
    with BackgroundServer(receiver.app(), port):
        yield receiver


def push_keys(service: PushService, **behaviour) -> tuple[str, PushKeys]:
    sub = service.new_subscription(Behaviour(**behaviour) if behaviour else None)
    info = sub.subscription()
    return sub.id, PushKeys(info["endpoint"], info["keys"]["p256dh"], info["keys"]["auth"])


def test_the_vapid_key_is_generated_once_and_kept(tmp_path, monkeypatch, vapid):
    again = load_vapid(Settings())

    assert application_server_key(again) == application_server_key(vapid)
    assert (tmp_path / "vapid-private.pem").stat().st_mode & 0o777 == 0o600


def test_a_configured_vapid_key_wins(monkeypatch, vapid):
    other = Vapid()
    other.generate_keys()
    monkeypatch.setenv("VAPID_PRIVATE_KEY", other.private_pem().decode())

    assert application_server_key(load_vapid(Settings())) == application_server_key(other)


def test_a_push_message_arrives_decrypted_with_a_valid_vapid_token(push_service, vapid):
    ident, keys = push_keys(push_service)
    body = {"payment_id": "p-1", "status": "authorized"}

    outcome = WebPushSender(vapid, SUBJECT).send(
        keys, json.dumps(body).encode(), ttl=60, urgency="high", topic="p1", timeout=5
    )

    assert outcome.verdict is DeliveryVerdict.DELIVERED and outcome.status == 201
    (message,) = push_service.inbox.of(ident)
    assert message.body == body
    assert message.headers["ttl"] == "60"
    assert message.headers["urgency"] == "high"
    assert message.headers["topic"] == "p1"
    assert message.headers["content-encoding"] == "aes128gcm"
    assert push_service.inbox.refused == []


def test_a_push_signed_by_another_key_is_refused(push_service):
    stranger = Vapid()
    stranger.generate_keys()
    ident, keys = push_keys(push_service)

    outcome = WebPushSender(stranger, SUBJECT).send(
        keys, b"{}", ttl=60, urgency="normal", topic="t", timeout=5
    )

    assert outcome.verdict is DeliveryVerdict.REJECTED
    assert push_service.inbox.of(ident) == []


def test_a_gone_push_endpoint_is_reported_gone(push_service, vapid):
    _, keys = push_keys(push_service, status=410)

    outcome = WebPushSender(vapid, SUBJECT).send(
        keys, b"{}", ttl=60, urgency="normal", topic="t", timeout=5
    )

    assert outcome.verdict is DeliveryVerdict.GONE


def test_an_unreachable_push_service_is_worth_a_retry(vapid):
    keys = PushKeys(f"http://127.0.0.1:{free_port()}/push/x", *_any_keys())

    outcome = WebPushSender(vapid, SUBJECT).send(
        keys, b"{}", ttl=60, urgency="normal", topic="t", timeout=2
    )

    assert outcome.verdict is DeliveryVerdict.RETRY and outcome.status is None


def _any_keys() -> tuple[str, str]:
    info = PushService("http://127.0.0.1:1").new_subscription().subscription()
    return info["keys"]["p256dh"], info["keys"]["auth"]


def vapid_header(key: Vapid, claims: dict) -> str:
    return key.sign(claims)["Authorization"]


@pytest.mark.parametrize(
    ("claims", "problem"),
    [
        ({"aud": "http://elsewhere:1", "sub": SUBJECT}, "aud"),
        ({"aud": "http://127.0.0.1:9", "sub": SUBJECT, "exp": int(time.time()) - 10}, "exp"),
        ({"aud": "http://127.0.0.1:9", "sub": SUBJECT, "exp": int(time.time()) + 25 * 3600}, "exp"),
    ],
)
def test_vapid_tokens_with_the_wrong_audience_or_lifetime_are_refused(vapid, claims, problem):
    with pytest.raises(VapidError, match=problem):
        verify_vapid(vapid_header(vapid, claims), "http://127.0.0.1:9")


def test_a_tampered_vapid_token_is_refused(vapid):
    header = vapid_header(vapid, {"aud": "http://127.0.0.1:9", "sub": SUBJECT})
    token_start = header.index("t=") + 2
    forged = (
        header[: token_start + 40]
        + ("A" if header[token_start + 40] != "A" else "B")
        + header[token_start + 41 :]
    )

    with pytest.raises(VapidError):
        verify_vapid(forged, "http://127.0.0.1:9")
    assert verify_vapid(header, "http://127.0.0.1:9")["aud"] == "http://127.0.0.1:9"


def test_a_signed_webhook_is_verified_by_the_receiver(hooks):
    channel = hooks.new_channel()
    secret = new_secret()
    hooks.trust(channel, secret)
    payload = json.dumps({"payment_id": "p-1", "status": "pending"})

    outcome = WebhookSender().send(hooks.url(channel), secret, "msg-1", payload, timeout=5)

    assert outcome.verdict is DeliveryVerdict.DELIVERED
    (message,) = hooks.inbox.of(channel)
    assert message.body == {"payment_id": "p-1", "status": "pending"}
    assert message.headers["webhook-id"] == "msg-1"


def test_a_webhook_signed_with_another_secret_is_refused(hooks):
    channel = hooks.new_channel()
    hooks.trust(channel, new_secret())

    outcome = WebhookSender().send(hooks.url(channel), new_secret(), "msg-1", "{}", timeout=5)

    assert outcome.verdict is DeliveryVerdict.REJECTED and outcome.status == 401
    assert hooks.inbox.of(channel) == []
    assert "signature" in hooks.inbox.refused[0][1]


def test_secrets_have_the_standard_prefix_and_headers_the_standard_names():
    secret = new_secret()
    headers = signed_headers(secret, "msg-1", "{}")

    assert secret.startswith("whsec_")
    assert headers["webhook-signature"].startswith("v1,")
    assert set(headers) >= {"webhook-id", "webhook-timestamp", "webhook-signature"}
