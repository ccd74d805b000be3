"""The simulator's own subscribers: it subscribes its receivers to each account it opens and
keeps every notification that arrives, with its arrival time, for end-to-end latency and for
invariant 7 (each status change reaches each subscription exactly once).

The receivers (simulator/receivers.py) check what they get as the real world would: Web Push is
VAPID-checked and decrypted (RFC 8291/8292), webhooks are verified (Standard Webhooks). Each
serves from a thread of its own, so a burst of notifications does not delay our sends.
"""

from __future__ import annotations

from typing import Any

from simulator.api_client import PaymentsApi
from simulator.receivers import BackgroundServer, PushService, WebhookReceiver, free_port


class Receivers:
    def __init__(self, *, webhook: bool = True, webpush: bool = True) -> None:
        self._want_webhook = webhook
        self._want_webpush = webpush
        self._webhook: WebhookReceiver | None = None
        self._push: PushService | None = None
        self._servers: list[BackgroundServer] = []
        self._channels: dict[tuple[str, str], str] = {}  # (kind, channel) -> subscription id
        self.subscriptions: list[dict[str, Any]] = []
        self.notes: list[str] = []

    def _serve(self, app: Any, port: int) -> None:
        server = BackgroundServer(app, port=port).start()
        self._servers.append(server)

    async def start(self) -> None:
        if self._want_webhook:
            port = free_port()
            self._webhook = WebhookReceiver(f"http://127.0.0.1:{port}")
            self._serve(self._webhook.app(), port)
        if self._want_webpush:
            port = free_port()
            self._push = PushService(f"http://127.0.0.1:{port}")
            self._serve(self._push.app(), port)

    async def stop(self) -> None:
        for server in self._servers:
            server.stop()
        self._servers.clear()

    async def subscribe(self, api: PaymentsApi, account_id: str) -> None:
        if self._webhook is not None:
            channel = self._webhook.new_channel()
            body = {"kind": "webhook", "account_id": account_id, "url": self._webhook.url(channel)}
            answer = await api.subscribe(body)
            self._webhook.trust(channel, answer["secret"])
            self._remember("webhook", channel, answer["id"], account_id)
        if self._push is not None:
            keys = self._push.new_subscription()
            body = {
                "kind": "webpush",
                "account_id": account_id,
                "subscription": keys.subscription(),
            }
            answer = await api.subscribe(body)
            self._remember("webpush", keys.id, answer["id"], account_id)

    def _remember(self, kind: str, channel: str, subscription_id: str, account_id: str) -> None:
        self._channels[(kind, channel)] = subscription_id
        self.subscriptions.append({"id": subscription_id, "kind": kind, "account_id": account_id})

    def refused(self) -> list[str]:
        """Messages the receivers turned away (bad signature, undecryptable...)."""
        refused = []
        for kind, receiver in (("webhook", self._webhook), ("webpush", self._push)):
            if receiver is not None:
                refused += [f"{kind} {ch}: {why}" for ch, why in receiver.inbox.refused]
        return refused

    def notifications(self, wall_start: float) -> list[dict[str, Any]]:
        """Every notification accepted so far; ``received`` is seconds after ``wall_start``."""
        received = []
        for kind, receiver in (("webhook", self._webhook), ("webpush", self._push)):
            if receiver is None:
                continue
            for message in list(receiver.inbox.messages):
                body = message.body if isinstance(message.body, dict) else {}
                received.append(
                    {
                        "subscription_id": self._channels.get((kind, message.channel)),
                        "kind": kind,
                        "payment_id": body.get("payment_id"),
                        "account_id": body.get("account_id"),
                        "status": body.get("status"),
                        "event_id": body.get("event_id"),
                        "received": message.received_at - wall_start,
                    }
                )
        return received
