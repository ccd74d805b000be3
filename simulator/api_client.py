"""The payments API as the simulator uses it: one pooled aiohttp session, the client's API key."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
from consim.config import settings

from simulator.loadgen import Answer
from simulator.schedule import AccountPlan, Send

SETUP_ATTEMPTS = 4


class ApiError(RuntimeError):
    """The API answered something the simulator cannot go on without."""

    def __init__(self, what: str, status: int, body: Any) -> None:
        super().__init__(f"{what}: HTTP {status} {body}")
        self.status = status
        self.body = body


def api_key() -> str:
    """API_KEY from the environment, else the key the native stack generated on `make up`."""
    key = os.environ.get("API_KEY")
    if key:
        return key
    try:
        from infra.clients import api_key as stack_key
        from infra.layout import Layout
    except ImportError as exc:  # the infra package is part of this repository; be explicit
        raise ApiError("no API_KEY and no infra package to find the stack's key", 0, "") from exc
    key = stack_key(Layout(settings().state_dir))
    if not key:
        raise ApiError("no API_KEY set and the stack has not generated one (make up)", 0, "")
    return key


async def _body(response: aiohttp.ClientResponse) -> Any:
    text = await response.text()
    if not text:
        return None
    try:
        return await response.json(content_type=None)
    except ValueError:
        return text


class PaymentsApi:
    def __init__(self, base_url: str, key: str, *, max_connections: int = 256) -> None:
        self._base = base_url.rstrip("/")
        self._key = key
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> PaymentsApi:
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0)
        self._session = aiohttp.ClientSession(connector=connector, headers={"x-api-key": self._key})
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use PaymentsApi as an async context manager"
        return self._session

    async def request(self, method: str, path: str, **kwargs: Any) -> Answer:
        async with self.session.request(method, f"{self._base}{path}", **kwargs) as response:
            return Answer(response.status, await _body(response))

    async def health(self) -> Answer:
        return await self.request("GET", "/health")

    async def _setup_call(self, what: str, path: str, body: dict[str, Any]) -> Answer:
        """A set-up call, retried on 5xx: a cold worker may time out on its first request.

        A retried account opening may find the account opened by the first attempt (409)."""
        answer = Answer(0, None)
        for attempt in range(SETUP_ATTEMPTS):
            try:
                answer = await self.request("POST", path, json=body)
            except aiohttp.ClientError as exc:
                answer = Answer(0, str(exc))
            if answer.status and answer.status < 500:
                return answer
            await asyncio.sleep(0.5 * (attempt + 1))
        raise ApiError(what, answer.status, answer.body)

    async def open_account(self, account: AccountPlan) -> dict[str, Any]:
        body = {
            "id": account.account_id,
            "currency": account.currency,
            "limit": account.limit,
            "balance": account.balance,
        }
        what = f"opening account {account.account_id}"
        answer = await self._setup_call(what, "/accounts", body)
        if answer.status == 409:
            answer = await self.get_account(account.account_id)
            if answer.status == 200 and answer.body.get("limit") == account.limit:
                return answer.body
        if answer.status not in (200, 201):
            raise ApiError(what, answer.status, answer.body)
        return answer.body

    async def get_account(self, account_id: str) -> Answer:
        return await self.request("GET", f"/accounts/{account_id}")

    async def post_payment(self, send: Send) -> Answer:
        body = {
            "account_id": send.account_id,
            "amount": send.amount,
            "currency": send.currency,
            # The same for every send of a payment: a retry must carry the very same body.
            "description": f"consim payment #{send.payment_index}",
        }
        headers = {"Idempotency-Key": send.idempotency_key}
        return await self.request("POST", "/payments", json=body, headers=headers)

    async def subscribe(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self._setup_call(f"subscribing {body.get('kind')}", "/subscriptions", body)
        if answer.status != 201:
            raise ApiError(f"subscribing {body.get('kind')}", answer.status, answer.body)
        return answer.body

    async def unsubscribe(self, subscription_id: str) -> Answer:
        return await self.request("DELETE", f"/subscriptions/{subscription_id}")

    async def kill_workers(self, function: str) -> Answer:
        """The emulator's chaos hook: stop the function's workers as if Lambda recycled them."""
        return await self.request("POST", f"/_emulator/functions/{function}/kill")
