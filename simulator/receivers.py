"""Local receivers of our notifications, checking them the way the real world would.

`PushService` acts as a browser's push service *and* the browser behind it: it hands out
PushSubscriptions (a fresh P-256 key pair and auth secret each), and for every message posted to
an endpoint it checks the VAPID authorisation (RFC 8292: an ES256 JWT whose `aud` is this
service's origin and whose `exp` is less than 24 hours away, signed by the key in `k`) and decrypts
the body with the subscription's private key (RFC 8291, aes128gcm).

`WebhookReceiver` verifies each request with the Standard Webhooks library and the secret the
subscription was given.

Both are aiohttp applications; `BackgroundServer` runs one on a thread of its own (for tests and
the simulator). A message counts as accepted only if the sender is still connected when it is
answered: a sender killed while the receiver held the request never learnt it was accepted, and
will send it again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import http_ece
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

MAX_VAPID_LIFETIME_SECONDS = 24 * 3600


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class VapidError(ValueError):
    """The Authorization header is not a valid VAPID token for this push service."""


def verify_vapid(
    authorization: str | None, audience: str, now: float | None = None
) -> dict[str, Any]:
    """Check an RFC 8292 `Authorization: vapid t=<jwt>, k=<key>` header; returns the claims
    plus the signer's public key under `k`."""
    if not authorization or not authorization.lower().startswith("vapid "):
        raise VapidError("no 'vapid' Authorization")
    params = {}
    for part in authorization[len("vapid ") :].split(","):
        name, _, value = part.strip().partition("=")
        params[name.strip()] = value.strip()
    token, key = params.get("t"), params.get("k")
    if not token or not key:
        raise VapidError("the Authorization lacks t= or k=")

    try:
        header_b64, claims_b64, signature_b64 = token.split(".")
        header = json.loads(b64url_decode(header_b64))
        claims = json.loads(b64url_decode(claims_b64))
        signature = b64url_decode(signature_b64)
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(key))
    except ValueError as exc:
        raise VapidError(f"malformed token or key: {exc}") from exc
    if header.get("alg") != "ES256":
        raise VapidError(f"alg is {header.get('alg')!r}, not ES256")
    if len(signature) != 64:
        raise VapidError("an ES256 signature is 64 bytes (r || s)")
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        public.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise VapidError("the signature does not match the key in k=") from exc

    now = time.time() if now is None else now
    if claims.get("aud") != audience:
        raise VapidError(f"aud is {claims.get('aud')!r}, not {audience!r}")
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp <= now or exp > now + MAX_VAPID_LIFETIME_SECONDS:
        raise VapidError(f"exp {exp!r} is not within the next 24 hours")
    if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
        raise VapidError("sub must be a mailto: or https: URI")
    return {**claims, "k": key}


@dataclass
class Received:
    """One accepted message; header names in lower case."""

    channel: str
    body: dict[str, Any]
    headers: dict[str, str]
    received_at: float  # time.time()


def _lowered(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


@dataclass
class Behaviour:
    """How an endpoint answers: its status, and how long it holds each request first."""

    status: int = 201
    hold_seconds: float = 0.0
    holds_left: int | None = None  # hold only this many requests (None: all)


class _Inbox:
    """Accepted messages and refusals, shared between the server's loop and other threads."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self.messages: list[Received] = []
        self.refused: list[tuple[str, str]] = []
        self.arrivals: dict[str, int] = {}  # requests that passed the checks, accepted or not

    def arrive(self, channel: str) -> None:
        with self._lock:
            self.arrivals[channel] = self.arrivals.get(channel, 0) + 1
            self._lock.notify_all()

    def accept(self, message: Received) -> None:
        with self._lock:
            self.messages.append(message)
            self._lock.notify_all()

    def refuse(self, channel: str, reason: str) -> None:
        with self._lock:
            self.refused.append((channel, reason))
            self._lock.notify_all()

    def since(self, count: int) -> list[Received]:
        """The messages accepted after the first `count`."""
        with self._lock:
            return self.messages[count:]

    def take_refusals(self) -> list[tuple[str, str]]:
        with self._lock:
            taken, self.refused = self.refused, []
            return taken

    def of(self, channel: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.channel == channel]

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float
    ) -> list[Received]:
        """Block until `predicate(all messages)` holds; returns them (raises on timeout)."""
        with self._lock:
            if not self._lock.wait_for(lambda: predicate(list(self.messages)), timeout):
                raise TimeoutError(
                    f"receiver: condition not met in {timeout}s; got {len(self.messages)} "
                    f"message(s), refused {self.refused}"
                )
            return list(self.messages)

    def wait_for_arrivals(self, channel: str, count: int, timeout: float) -> None:
        with self._lock:
            if not self._lock.wait_for(lambda: self.arrivals.get(channel, 0) >= count, timeout):
                raise TimeoutError(
                    f"receiver: {count} request(s) on {channel} not seen in {timeout}s"
                )


async def _held(request: web.Request, behaviour: Behaviour) -> bool:
    """Hold the request as configured; False if the sender hung up meanwhile."""
    if behaviour.hold_seconds <= 0 or behaviour.holds_left == 0:
        return True
    if behaviour.holds_left is not None:
        behaviour.holds_left -= 1
    await asyncio.sleep(behaviour.hold_seconds)
    transport = request.transport
    return transport is not None and not transport.is_closing()


@dataclass
class PushSubscriptionKeys:
    id: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    endpoint: str
    behaviour: Behaviour = field(default_factory=Behaviour)

    def subscription(self) -> dict[str, Any]:
        """The PushSubscription JSON a browser would hand to the application."""
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "keys": {"p256dh": b64url(public), "auth": b64url(self.auth)},
        }


class PushService:
    """A push service with its user agents: issues subscriptions, checks and decrypts messages."""

    def __init__(self, origin: str, expected_vapid_key: str | None = None) -> None:
        self.origin = origin.rstrip("/")
        self.expected_vapid_key = expected_vapid_key
        self.inbox = _Inbox()
        self._subscriptions: dict[str, PushSubscriptionKeys] = {}

    def new_subscription(self, behaviour: Behaviour | None = None) -> PushSubscriptionKeys:
        ident = uuid.uuid4().hex
        keys = PushSubscriptionKeys(
            id=ident,
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth=secrets.token_bytes(16),
            endpoint=f"{self.origin}/push/{ident}",
            behaviour=behaviour or Behaviour(),
        )
        self._subscriptions[ident] = keys
        return keys

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/push/{id}", self._receive)
        return app

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        ident = request.match_info["id"]
        keys = self._subscriptions.get(ident)
        if keys is None:
            return web.Response(status=404, text="no such subscription")
        body = await request.read()
        try:
            claims = verify_vapid(request.headers.get("Authorization"), self.origin)
        except VapidError as exc:
            self.inbox.refuse(ident, f"vapid: {exc}")
            return web.Response(status=401, text=str(exc))
        if self.expected_vapid_key and claims["k"] != self.expected_vapid_key:
            self.inbox.refuse(ident, "vapid: signed by another key")
            return web.Response(status=403, text="not the key this subscription was made with")
        if request.headers.get("Content-Encoding") != "aes128gcm":
            self.inbox.refuse(ident, "content-encoding is not aes128gcm")
            return web.Response(status=415)
        if "TTL" not in request.headers:
            self.inbox.refuse(ident, "no TTL header")
            return web.Response(status=400, text="TTL is required")
        try:
            plain = http_ece.decrypt(
                body, private_key=keys.private_key, auth_secret=keys.auth, version="aes128gcm"
            )
            message = json.loads(plain)
        except Exception as exc:  # any decryption or parse failure is the sender's fault
            self.inbox.refuse(ident, f"undecryptable: {type(exc).__name__}: {exc}")
            return web.Response(status=400, text="cannot decrypt")

        self.inbox.arrive(ident)
        behaviour = keys.behaviour
        if behaviour.status >= 300:
            return web.Response(status=behaviour.status)
        if not await _held(request, behaviour):
            return web.Response(status=503)
        self.inbox.accept(Received(ident, message, _lowered(request.headers), time.time()))
        return web.Response(
            status=201, headers={"Location": f"{self.origin}/messages/{uuid.uuid4().hex}"}
        )


class WebhookReceiver:
    """Receives Standard Webhooks on `/hooks/<channel>`, verified with the channel's secret."""

    def __init__(self, origin: str) -> None:
        self.origin = origin.rstrip("/")
        self.inbox = _Inbox()
        self._secrets: dict[str, str] = {}
        self._behaviours: dict[str, Behaviour] = {}

    def new_channel(self, behaviour: Behaviour | None = None) -> str:
        """A fresh channel; its URL is `url(channel)`; give it the secret with `trust`."""
        channel = uuid.uuid4().hex
        self._behaviours[channel] = behaviour or Behaviour(status=204)
        return channel

    def url(self, channel: str) -> str:
        return f"{self.origin}/hooks/{channel}"

    def trust(self, channel: str, secret: str) -> None:
        self._secrets[channel] = secret

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hooks/{channel}", self._receive)
        return app

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        channel = request.match_info["channel"]
        secret = self._secrets.get(channel)
        if secret is None:
            return web.Response(status=404, text="unknown channel")
        body = await request.read()
        try:
            message = Webhook(secret).verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            self.inbox.refuse(channel, f"signature: {exc}")
            return web.Response(status=401, text=str(exc))

        self.inbox.arrive(channel)
        behaviour = self._behaviours[channel]
        if behaviour.status >= 300:
            return web.Response(status=behaviour.status)
        if not await _held(request, behaviour):
            return web.Response(status=503)
        self.inbox.accept(Received(channel, message, _lowered(request.headers), time.time()))
        return web.Response(status=behaviour.status)


class BackgroundServer:
    """Serves an aiohttp application on 127.0.0.1 from a thread with its own event loop."""

    def __init__(self, app: web.Application, port: int = 0, host: str = "127.0.0.1") -> None:
        self._app = app
        self._host = host
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = port

    def start(self) -> BackgroundServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        sockets = site._server.sockets if site._server else []  # the port the OS chose for 0
        if sockets:
            self.port = sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_push_service(expected_vapid_key: str | None = None) -> Iterator[PushService]:
    """A PushService listening on a free loopback port until the block ends."""
    port = free_port()
    service = PushService(f"http://127.0.0.1:{port}", expected_vapid_key)
    with BackgroundServer(service.app(), port):
        yield service


@contextlib.contextmanager
def serve_webhook_receiver() -> Iterator[WebhookReceiver]:
    """A WebhookReceiver listening on a free loopback port until the block ends."""
    port = free_port()
    receiver = WebhookReceiver(f"http://127.0.0.1:{port}")
    with BackgroundServer(receiver.app(), port):
        yield receiver


# -- `python -m simulator.receivers`: watch a payment's notifications arrive, by hand -----------


def _subscribe(api: Any, target: dict[str, str], push: PushService, hooks: WebhookReceiver):
    browser = push.new_subscription()
    pushed = api.post(
        "/subscriptions", json={"kind": "webpush", **target, "subscription": browser.subscription()}
    )
    pushed.raise_for_status()
    channel = hooks.new_channel()
    hooked = api.post(
        "/subscriptions", json={"kind": "webhook", **target, "url": hooks.url(channel)}
    )
    hooked.raise_for_status()
    hooks.trust(channel, hooked.json()["secret"])
    return [pushed.json()["id"], hooked.json()["id"]]


def _line(kind: str, message: Received) -> str:
    body = message.body
    return (
        f"{time.strftime('%H:%M:%S')}  {kind:<8} {body.get('status', '?'):<10} "
        f"payment {body.get('payment_id')}  {body.get('amount')} {body.get('currency')}"
    )


def main(argv: list[str] | None = None) -> int:
    """Subscribe a local push service and a local webhook receiver through the API, then print
    every notification as it arrives (decrypted and VAPID-checked, or signature-verified)."""
    import argparse
    import os

    import requests

    parser = argparse.ArgumentParser(prog="python -m simulator.receivers", description=main.__doc__)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--account-id")
    which.add_argument("--payment-id")
    parser.add_argument("--api-url", default=os.environ.get("API_URL", "http://127.0.0.1:3000"))
    parser.add_argument("--api-key", default=os.environ.get("API_KEY"))
    parser.add_argument("--count", type=int, default=0, help="stop after this many messages")
    parser.add_argument("--timeout", type=float, default=0, help="stop after this many seconds")
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error("--api-key or API_KEY is required")

    api = requests.Session()
    api.headers["x-api-key"] = args.api_key
    api.request = _prefixed(api.request, args.api_url.rstrip("/"))  # type: ignore[method-assign]
    vapid_key = api.get("/vapid-public-key").json()["public_key"]
    target = {"account_id": args.account_id} if args.account_id else {"payment_id": args.payment_id}

    with serve_push_service(vapid_key) as push, serve_webhook_receiver() as hooks:
        subscriptions = _subscribe(api, target, push, hooks)
        print(f"listening: web push at {push.origin}, webhooks at {hooks.origin}", flush=True)
        shown = {"webpush": 0, "webhook": 0}
        started = time.monotonic()
        try:
            while True:
                for kind, inbox in (("webpush", push.inbox), ("webhook", hooks.inbox)):
                    fresh = inbox.since(shown[kind])
                    for message in fresh:
                        print(_line(kind, message), flush=True)
                    shown[kind] += len(fresh)
                    for channel, reason in inbox.take_refusals():
                        print(f"refused on {channel}: {reason}", flush=True)
                if args.count and sum(shown.values()) >= args.count:
                    break
                if args.timeout and time.monotonic() - started > args.timeout:
                    break
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
        finally:
            for subscription_id in subscriptions:
                api.delete(f"/subscriptions/{subscription_id}")
    return 0


def _prefixed(request: Callable[..., Any], base: str) -> Callable[..., Any]:
    def call(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", 30)
        return request(method, base + url if url.startswith("/") else url, *args, **kwargs)

    return call


if __name__ == "__main__":
    raise SystemExit(main())
