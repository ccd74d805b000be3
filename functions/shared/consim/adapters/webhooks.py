"""Webhooks signed the Standard Webhooks way (webhook-id, webhook-timestamp, webhook-signature).

The signature is made by the `standardwebhooks` library itself, so any verifier of that
convention accepts what we send. The `webhook-id` is stable per (subscription, event): a receiver
that sees the same id twice (a retry, or a re-delivered Kafka record) can drop the second.
"""

from __future__ import annotations

import base64
import secrets
import threading
from datetime import UTC, datetime

import requests
from standardwebhooks.webhooks import Webhook

from consim.domain.notifications import (
    DeliveryOutcome,
    judge_response,
    parse_retry_after,
    unreachable,
)

SECRET_PREFIX = "whsec_"
_SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh signing secret, shown to the subscriber once."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


def signed_headers(secret: str, message_id: str, payload: str, now: datetime | None = None) -> dict:
    timestamp = now or datetime.now(UTC)
    signature = Webhook(secret).sign(message_id, timestamp, payload)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


class WebhookSender:
    """Posts one signed message to one URL; safe to call from many threads."""

    def __init__(self, user_agent: str = "consim-notifier") -> None:
        self._local = threading.local()
        self._user_agent = user_agent

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def send(
        self, url: str, secret: str, message_id: str, payload: str, *, timeout: float
    ) -> DeliveryOutcome:
        # Signed at each attempt: the timestamp must be fresh for the receiver's tolerance window.
        headers = signed_headers(secret, message_id, payload)
        headers["user-agent"] = self._user_agent
        try:
            response = self._session().post(
                url, data=payload.encode(), headers=headers, timeout=timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            return unreachable(f"{type(exc).__name__}: {exc}")
        return judge_response(
            response.status_code,
            f"receiver answered {response.status_code}",
            parse_retry_after(response.headers.get("Retry-After")),
        )
