"""Notifications of payment status, and the subscriptions that receive them. No I/O lives here.

A subscription follows one target: an account (every payment of it) or a single payment. Each
status change of a payment becomes one `Notification`; the notifier sends it, as the same JSON
body, to every subscription following the payment or its account.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from consim.domain.errors import InvalidRequest, NotFound

# The event that changes a payment's status, and the status it changes it to.
STATUS_BY_EVENT_TYPE: dict[str, str] = {
    "PaymentRequested": "pending",
    "PaymentAuthorized": "authorized",
    "PaymentDeclined": "declined",
    "PaymentFailed": "failed",
}
FINAL_STATUSES = frozenset({"authorized", "declined", "failed"})

_P256_POINT_LENGTH = 65  # 0x04 || X (32 bytes) || Y (32 bytes)
_AUTH_SECRET_LENGTH = 16
_MAX_URL_LENGTH = 2048
_TOPIC_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")


class SubscriptionKind(StrEnum):
    WEBPUSH = "webpush"
    WEBHOOK = "webhook"


class InvalidSubscription(InvalidRequest):
    """The subscription request is malformed: `field` names what is wrong."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field


class SubscriptionNotFound(NotFound):
    def __init__(self, subscription_id: str) -> None:
        super().__init__(f"subscription {subscription_id} does not exist")
        self.subscription_id = subscription_id


@dataclass(frozen=True)
class Target:
    """What a subscription follows: `account` or `payment`, and its id."""

    kind: str
    id: str

    @property
    def key(self) -> str:
        return f"{self.kind}#{self.id}"

    @classmethod
    def from_key(cls, key: str) -> Target:
        kind, _, ident = key.partition("#")
        return cls(kind, ident)


@dataclass(frozen=True)
class PushKeys:
    """A browser's PushSubscription: where its push service listens and its two keys."""

    endpoint: str
    p256dh: str
    auth: str

    def as_subscription_info(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


@dataclass(frozen=True)
class Subscription:
    id: str
    client_id: str
    kind: SubscriptionKind
    target: Target
    created_at: str
    push: PushKeys | None = None
    url: str | None = None
    secret: str | None = None

    def public_view(self) -> dict[str, Any]:
        """What the API shows of a subscription; the webhook secret is not part of it."""
        view: dict[str, Any] = {
            "id": self.id,
            "kind": str(self.kind),
            f"{self.target.kind}_id": self.target.id,
            "created_at": self.created_at,
        }
        if self.push is not None:
            view["subscription"] = self.push.as_subscription_info()
        if self.url is not None:
            view["url"] = self.url
        return view


@dataclass(frozen=True)
class SubscriptionRequest:
    """A validated `POST /subscriptions` body."""

    kind: SubscriptionKind
    target: Target
    push: PushKeys | None = None
    url: str | None = None


@dataclass(frozen=True)
class Notification:
    payment_id: str
    account_id: str
    amount: int
    currency: str
    status: str
    event_id: str
    occurred_at: str

    def body(self) -> dict[str, Any]:
        return {
            "payment_id": self.payment_id,
            "account_id": self.account_id,
            "amount": self.amount,
            "currency": self.currency,
            "status": self.status,
            "event_id": self.event_id,
            "occurred_at": self.occurred_at,
        }

    @property
    def targets(self) -> tuple[Target, Target]:
        return Target("payment", self.payment_id), Target("account", self.account_id)

    @property
    def urgency(self) -> str:
        # A final status is what a person waits for; `pending` merely confirms the request.
        return "high" if self.status in FINAL_STATUSES else "normal"

    @property
    def topic(self) -> str:
        """The Web Push Topic: one per payment, so a queued `pending` is replaced by the outcome."""
        compact = self.payment_id.replace("-", "")
        if _TOPIC_PATTERN.fullmatch(compact):
            return compact
        digest = hashlib.sha256(self.payment_id.encode()).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:32]


def status_of(event_type: str) -> str | None:
    """The payment status an event type moves to, or None when it is not a status change."""
    return STATUS_BY_EVENT_TYPE.get(event_type)


def notification_from_envelope(
    envelope: dict[str, Any], amount: int, currency: str
) -> Notification:
    """The notification of one status-changing event; amount and currency come from the payment."""
    data = envelope["data"]
    status = status_of(envelope["type"])
    if status is None:
        raise ValueError(f"{envelope['type']} does not change a payment's status")
    return Notification(
        payment_id=data["payment_id"],
        account_id=data["account_id"],
        amount=amount,
        currency=currency,
        status=status,
        event_id=envelope["event_id"],
        occurred_at=envelope["occurred_at"],
    )


def _b64url_decode(value: Any, field: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise InvalidSubscription(field, "must be a non-empty base64url string")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidSubscription(field, "is not valid base64url") from exc


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_url(value: Any, field: str, allow_loopback_http: bool) -> str:
    """An https URL, or (native stack only) an http URL on the loopback interface."""
    if not isinstance(value, str) or not value or len(value) > _MAX_URL_LENGTH:
        raise InvalidSubscription(field, f"must be a URL of at most {_MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
    except ValueError as exc:
        raise InvalidSubscription(field, "is not a valid URL") from exc
    if not host:
        raise InvalidSubscription(field, "has no host")
    if parts.scheme == "https":
        return value
    if parts.scheme == "http" and allow_loopback_http and _is_loopback(host):
        return value
    allowed = "https (or http on the loopback interface)" if allow_loopback_http else "https"
    raise InvalidSubscription(field, f"must be {allowed}")


def validate_push_keys(value: Any, allow_loopback_http: bool) -> PushKeys:
    """A PushSubscription as the W3C Push API serialises it, checked the way a sender needs it."""
    if not isinstance(value, dict):
        raise InvalidSubscription("subscription", "must be an object {endpoint, keys}")
    endpoint = validate_url(value.get("endpoint"), "subscription.endpoint", allow_loopback_http)
    keys = value.get("keys")
    if not isinstance(keys, dict):
        raise InvalidSubscription("subscription.keys", "must be an object {p256dh, auth}")

    point = _b64url_decode(keys.get("p256dh"), "subscription.keys.p256dh")
    if len(point) != _P256_POINT_LENGTH or point[0] != 0x04 or not _on_p256(point):
        raise InvalidSubscription(
            "subscription.keys.p256dh", "must be an uncompressed point on the P-256 curve"
        )
    auth = _b64url_decode(keys.get("auth"), "subscription.keys.auth")
    if len(auth) != _AUTH_SECRET_LENGTH:
        raise InvalidSubscription("subscription.keys.auth", "must decode to 16 bytes")
    return PushKeys(endpoint=endpoint, p256dh=keys["p256dh"], auth=keys["auth"])


# The curve P-256 (FIPS 186-4, D.1.2.3): y^2 = x^3 - 3x + b over GF(p). Checking the equation
# here keeps the domain free of a crypto library while still refusing keys no browser would make.
_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B


def _on_p256(point: bytes) -> bool:
    x = int.from_bytes(point[1:33], "big")
    y = int.from_bytes(point[33:65], "big")
    if not (0 <= x < _P and 0 <= y < _P):
        return False
    return (y * y - (x * x * x - 3 * x + _B)) % _P == 0


def parse_subscription_request(body: Any, allow_loopback_http: bool) -> SubscriptionRequest:
    """Validate a `POST /subscriptions` body; raises InvalidSubscription naming the bad field."""
    if not isinstance(body, dict):
        raise InvalidSubscription("body", "must be a JSON object")
    try:
        kind = SubscriptionKind(body.get("kind"))
    except ValueError as exc:
        raise InvalidSubscription("kind", "must be 'webpush' or 'webhook'") from exc

    account_id, payment_id = body.get("account_id"), body.get("payment_id")
    if (account_id is None) == (payment_id is None):
        raise InvalidSubscription("account_id", "give exactly one of account_id and payment_id")
    name, ident = ("account", account_id) if account_id is not None else ("payment", payment_id)
    if not isinstance(ident, str) or not ident or len(ident) > 128:
        raise InvalidSubscription(f"{name}_id", "must be a non-empty string")
    target = Target(name, ident)

    if kind is SubscriptionKind.WEBPUSH:
        push = validate_push_keys(body.get("subscription"), allow_loopback_http)
        return SubscriptionRequest(kind=kind, target=target, push=push)
    url = validate_url(body.get("url"), "url", allow_loopback_http)
    return SubscriptionRequest(kind=kind, target=target, url=url)


class DeliveryVerdict(StrEnum):
    DELIVERED = "delivered"
    GONE = "gone"  # the subscriber no longer exists: forget the subscription
    RETRY = "retry"  # a transient refusal: try again after a pause
    REJECTED = "rejected"  # refused for good: retrying the same request cannot help


@dataclass(frozen=True)
class DeliveryOutcome:
    verdict: DeliveryVerdict
    status: int | None
    reason: str
    retry_after: float | None = None


def judge_response(
    status: int, reason: str = "", retry_after: float | None = None
) -> DeliveryOutcome:
    """What an HTTP answer from a push service or a webhook receiver means for the sender."""
    if 200 <= status < 300:
        verdict = DeliveryVerdict.DELIVERED
    elif status in (404, 410):
        verdict = DeliveryVerdict.GONE
    elif status in (408, 425, 429) or status >= 500:
        verdict = DeliveryVerdict.RETRY
    else:
        verdict = DeliveryVerdict.REJECTED
    return DeliveryOutcome(verdict, status, reason or f"HTTP {status}", retry_after)


def unreachable(reason: str) -> DeliveryOutcome:
    """No answer at all (refused, reset, timed out): worth another try."""
    return DeliveryOutcome(DeliveryVerdict.RETRY, None, reason)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
