"""An in-process stand-in for the whole payments system, honest or with a chosen bug.

It speaks the API contract over real HTTP (aiohttp), keeps an event store in memory, processes
each payment a moment after accepting it, and signs webhooks the Standard Webhooks way. The
matching inspector reads its state the way the real one reads Postgres, DynamoDB, the provider
and Kafka. Bugs: "ignore-limit", "double-notify", "lose-notify", "lose-publish",
"double-charge".
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from simulator.invariants import Evidence, _accounts, _payments


class FakeChaos:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def stop_kafka(self, seconds: float) -> None:
        self.calls.append(("stop-kafka", seconds))

    def restart_postgres(self) -> None:
        self.calls.append(("restart-postgres", None))

    def kill_worker(self, function: str) -> None:
        self.calls.append(("kill-worker", function))


class FakeSystem:
    def __init__(self, bug: str | None = None, processing_delay: float = 0.02) -> None:
        self.bug = bug
        self.delay = processing_delay
        self.events: list[dict[str, Any]] = []
        self.versions: dict[str, int] = {}
        self.keys: dict[str, Any] = {}  # idempotency key -> "in-flight" | (status, body)
        self.subscriptions: list[dict[str, Any]] = []
        self.charges: list[dict[str, Any]] = []
        self.knob_calls: list[tuple[str, dict[str, Any]]] = []
        self.chaos = FakeChaos()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self.url = ""

    # -- the event store ------------------------------------------------------------------
    def _append(self, stream: str, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        version = self.versions.get(stream, 0) + 1
        self.versions[stream] = version
        event = {
            "position": len(self.events) + 1,
            "stream_id": stream,
            "version": version,
            "event_id": str(uuid.uuid4()),
            "type": kind,
            "data": data,
            "occurred_at": datetime.now(UTC).isoformat(),
        }
        self.events.append(event)
        return event

    def _account(self, account_id: str) -> Any:
        evidence = Evidence(
            events=[e for e in self.events if e["stream_id"] == f"account-{account_id}"]
        )
        return _accounts(evidence).get(account_id)

    # -- HTTP -----------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_post("/accounts", self._open)
        app.router.add_get("/accounts/{id}", self._get_account)
        app.router.add_post("/subscriptions", self._subscribe)
        app.router.add_delete("/subscriptions/{id}", self._unsubscribe)
        app.router.add_post("/payments", self._pay)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        self._client = aiohttp.ClientSession()

    async def stop(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks)
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, _: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _open(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._append(
            f"account-{body['id']}",
            "AccountOpened",
            {
                "account_id": body["id"],
                "currency": body["currency"],
                "limit": body["limit"],
                "balance": body.get("balance", 0),
            },
        )
        return web.json_response({"id": body["id"]}, status=201)

    async def _get_account(self, request: web.Request) -> web.Response:
        fold = self._account(request.match_info["id"])
        if fold is None:
            return web.json_response({"type": "not-found"}, status=404)
        return web.json_response(
            {
                "id": request.match_info["id"],
                "balance": fold.balance,
                "reserved": fold.reserved,
                "limit": fold.limit,
            }
        )

    async def _subscribe(self, request: web.Request) -> web.Response:
        body = await request.json()
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        sub = {"id": f"sub-{len(self.subscriptions)}", "secret": secret, **body}
        self.subscriptions.append(sub)
        return web.json_response(
            {"id": sub["id"], "kind": body["kind"], "secret": secret}, status=201
        )

    async def _unsubscribe(self, request: web.Request) -> web.Response:
        ident = request.match_info["id"]
        self.subscriptions = [s for s in self.subscriptions if s["id"] != ident]
        return web.Response(status=204)

    async def _pay(self, request: web.Request) -> web.Response:
        key = request.headers["Idempotency-Key"]
        body = await request.json()
        known = self.keys.get(key)
        if known == "in-flight":
            return web.json_response({"type": "/problems/request-in-flight"}, status=409)
        if known is not None:
            if known[2] != body:
                return web.json_response({"type": "/problems/idempotency-key-reused"}, status=422)
            return web.json_response(known[1], status=known[0])
        self.keys[key] = "in-flight"
        await asyncio.sleep(0.005)  # the window in which a concurrent duplicate sees 409

        fold = self._account(body["account_id"])
        available = fold.balance + fold.limit - fold.reserved
        if body["amount"] > available and self.bug != "ignore-limit":
            self.keys.pop(key)  # a refusal records nothing, so it is not replayed either
            return web.json_response({"type": "/problems/insufficient-funds"}, status=422)

        payment_id = str(uuid.uuid4())
        self._append(
            f"account-{body['account_id']}",
            "FundsReserved",
            {"payment_id": payment_id, "amount": body["amount"]},
        )
        requested = self._append(
            f"payment-{payment_id}",
            "PaymentRequested",
            {
                "payment_id": payment_id,
                "account_id": body["account_id"],
                "amount": body["amount"],
                "currency": body["currency"],
                "idempotency_key": key,
            },
        )
        answer = {"id": payment_id, "status": "pending", **body}
        self.keys[key] = (201, answer, body)
        task = asyncio.create_task(self._process(payment_id, body, requested))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response(answer, status=201)

    async def _process(self, payment_id: str, body: dict[str, Any], requested: dict) -> None:
        await self._notify(requested, body, "pending")
        await asyncio.sleep(self.delay)
        self.charges.append(
            {
                "payment_id": payment_id,
                "amount": body["amount"],
                "status": "authorized",
                "provider": "default",
            }
        )
        if self.bug == "double-charge":
            self.charges.append(dict(self.charges[-1]))
        final = self._append(
            f"payment-{payment_id}",
            "PaymentAuthorized",
            {"payment_id": payment_id, "account_id": body["account_id"], "provider": "default"},
        )
        self._append(
            f"account-{body['account_id']}",
            "FundsCaptured",
            {"payment_id": payment_id, "amount": body["amount"]},
        )
        if self.bug != "lose-notify":
            await self._notify(final, body, "authorized")
        if self.bug == "double-notify":
            await self._notify(final, body, "authorized")

    async def _notify(self, event: dict[str, Any], body: dict[str, Any], status: str) -> None:
        assert self._client is not None
        payload = {
            "payment_id": event["data"]["payment_id"],
            "account_id": body["account_id"],
            "amount": body["amount"],
            "currency": body["currency"],
            "status": status,
            "event_id": event["event_id"],
            "occurred_at": event["occurred_at"],
        }
        for sub in self.subscriptions:
            if sub.get("account_id") != body["account_id"] or sub["kind"] != "webhook":
                continue
            import json

            raw = json.dumps(payload)
            msg_id = f"msg_{uuid.uuid4().hex}"
            now = datetime.now(UTC)
            signature = Webhook(sub["secret"]).sign(msg_id, now, raw)
            headers = {
                "webhook-id": msg_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signature,
                "content-type": "application/json",
            }
            async with self._client.post(sub["url"], data=raw, headers=headers) as response:
                await response.read()


class FakeInspector:
    """Reads the fake's state the way StackInspector reads the real stack."""

    def __init__(self, system: FakeSystem) -> None:
        self.system = system
        self.chaos = system.chaos

    def pending(self, account_ids, payment_ids) -> set[str]:
        evidence = Evidence(events=list(self.system.events))
        payments = _payments(evidence)
        accounts = set(account_ids)
        return {
            pid for pid, p in payments.items() if p["account_id"] in accounts and p["finals"] == 0
        }

    def evidence(self, account_ids: list[str], payment_ids: list[str]) -> Evidence:
        accounts = set(account_ids)
        events = [
            e
            for e in self.system.events
            if e["stream_id"][len("account-") :] in accounts
            or e["data"].get("account_id") in accounts
        ]
        ours = {
            e["stream_id"][len("payment-") :]
            for e in events
            if e["stream_id"].startswith("payment-")
        }
        events += [
            e
            for e in self.system.events
            if e["stream_id"].startswith("payment-")
            and e["stream_id"][len("payment-") :] in ours
            and e not in events
        ]
        evidence = Evidence(events=sorted(events, key=lambda e: e["position"]))
        evidence.read_payments = {
            pid: {"payment_id": pid, "status": p["status"], "version": p["version"]}
            for pid, p in _payments(evidence).items()
        }
        evidence.read_accounts = {
            aid: {"account_id": aid, "balance": a.balance, "version": a.version}
            for aid, a in _accounts(evidence).items()
        }
        charges = [c for c in self.system.charges if c["payment_id"] in ours]
        evidence.provider_ledger = {"default": {"scope": "run", "charges": charges}}
        ids = [e["event_id"] for e in self.system.events]
        if self.system.bug == "lose-publish":
            ids = ids[:-1]
        evidence.kafka_event_ids = ids
        return evidence

    def knobs(self, provider: str) -> dict[str, Any]:
        return {"failure_rate": 0.0}

    def set_knobs(self, provider: str, changes: dict[str, Any]) -> Any:
        self.system.knob_calls.append((provider, dict(changes)))
        return changes

    def system_metrics(self, wall_start: float, wall_end: float) -> dict[str, Any]:
        return {"totals": {"ReservationConflicts": 3.0}, "reservation_conflicts": [[0, 3.0]]}
