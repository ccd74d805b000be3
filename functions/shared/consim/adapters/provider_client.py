"""The payment provider as the processor sees it: charge, look a charge up, ask for health.

    ProviderError
    ├── ProviderUnavailable   the request was refused before any decision (connection refused,
    │   │                     503 outage, unknown instance): nothing was charged
    │   └── ProviderBusy      429, over the provider's concurrency: nothing was charged
    ├── ProviderUncertain     the request may have been decided (timeout, 5xx, broken
    │   │                     connection): ask `status` before charging elsewhere
    │   └── ProviderTimeout
    └── ProviderRejected      the provider refuses the request itself (422): retrying is useless

A declined payment is not an error: it is an answer, a `Charge` whose status is "declined".
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Protocol

import urllib3

from consim.config import settings

DEFAULT = "default"
FALLBACK = "fallback"


class ProviderError(Exception):
    def __init__(self, provider: str, detail: str) -> None:
        super().__init__(f"provider {provider}: {detail}")
        self.provider = provider
        self.detail = detail


class ProviderUnavailable(ProviderError):
    pass


class ProviderBusy(ProviderUnavailable):
    pass


class ProviderUncertain(ProviderError):
    pass


class ProviderTimeout(ProviderUncertain):
    pass


class ProviderRejected(ProviderError):
    pass


@dataclass(frozen=True)
class Charge:
    """A decision in the provider's ledger."""

    provider: str
    payment_id: str
    status: str  # "authorized" | "declined"
    provider_ref: str
    fee: int
    reason: str | None = None
    already_processed: bool = False  # the answer to a repeated request (409)

    @property
    def authorized(self) -> bool:
        return self.status == "authorized"

    @classmethod
    def from_body(cls, provider: str, body: dict[str, Any], already: bool = False) -> Charge:
        return cls(
            provider=provider,
            payment_id=str(body["payment_id"]),
            status=str(body["status"]),
            provider_ref=str(body.get("provider_ref") or ""),
            fee=int(body.get("fee") or 0),
            reason=body.get("reason"),
            already_processed=already,
        )


@dataclass(frozen=True)
class Health:
    failing: bool
    min_response_time: int  # milliseconds


class PaymentProvider(Protocol):
    """The port the processing service needs; `HttpPaymentProvider` and test fakes implement it."""

    def charge(self, provider: str, payment_id: str, amount: int, currency: str) -> Charge: ...

    def status(self, provider: str, payment_id: str) -> Charge | None: ...

    def health(self, provider: str) -> Health: ...


class HttpPaymentProvider:
    """The provider's HTTP API under `base_url` (`.../providers`), one pooled client per process.

    urllib3's own retries are off: whether a failed request may be repeated, and where, is the
    processing service's decision, because a repeated charge is only safe with the same payment
    id at the same provider.
    """

    def __init__(
        self,
        base_url: str | None = None,
        timeout_s: float | None = None,
        connect_timeout_s: float = 0.5,
        maxsize: int = 8,
    ) -> None:
        config = settings()
        self.base_url = (base_url or config.provider_url).rstrip("/")
        self.timeout_s = timeout_s if timeout_s is not None else config.provider_timeout_ms / 1000
        self._connect_timeout_s = min(connect_timeout_s, self.timeout_s)
        self._http = urllib3.PoolManager(maxsize=maxsize, retries=False)

    def _request(
        self,
        provider: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        timeout_s: float,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        url = f"{self.base_url}/{provider}{path}"
        try:
            response = self._http.request(
                method,
                url,
                body=None if body is None else json.dumps(body).encode(),
                headers={"content-type": "application/json", **(headers or {})},
                timeout=urllib3.Timeout(connect=self._connect_timeout_s, read=timeout_s),
            )
        except urllib3.exceptions.ConnectTimeoutError as error:
            raise ProviderUnavailable(provider, f"connect timeout: {error}") from error
        except urllib3.exceptions.ReadTimeoutError as error:
            raise ProviderTimeout(provider, f"no answer within {timeout_s}s") from error
        except urllib3.exceptions.NewConnectionError as error:
            raise ProviderUnavailable(provider, f"cannot connect: {error}") from error
        except urllib3.exceptions.HTTPError as error:
            # The connection broke after the request may have been sent.
            raise ProviderUncertain(provider, f"{type(error).__name__}: {error}") from error
        try:
            payload = json.loads(response.data) if response.data else None
        except ValueError:
            payload = None
        return response.status, payload

    def charge(self, provider: str, payment_id: str, amount: int, currency: str) -> Charge:
        body = {"payment_id": payment_id, "amount": amount, "currency": currency}
        # Past this instant we no longer wait, so the provider must not charge either: a late
        # charge would land after we asked for it, found nothing, and went elsewhere.
        deadline = {"x-deadline-ms": str(int((time.time() + self.timeout_s) * 1000))}
        status, payload = self._request(
            provider, "POST", "/payments", body, self.timeout_s, deadline
        )
        if status in (201, 402) and isinstance(payload, dict):
            return Charge.from_body(provider, payload)
        if status == 409 and isinstance(payload, dict) and isinstance(payload.get("charge"), dict):
            return Charge.from_body(provider, payload["charge"], already=True)
        raise _error_for(provider, status, payload)

    def status(self, provider: str, payment_id: str) -> Charge | None:
        """The provider's decision on the payment, None if it has none."""
        status, payload = self._request(
            provider, "GET", f"/payments/{payment_id}", None, self.timeout_s
        )
        if status == 200 and isinstance(payload, dict):
            return Charge.from_body(provider, payload)
        if status == 404 and isinstance(payload, dict) and payload.get("error") == "not_found":
            return None
        raise _error_for(provider, status, payload)

    def health(self, provider: str) -> Health:
        try:
            status, payload = self._request(provider, "GET", "/health", None, self.timeout_s)
        except ProviderError:
            return Health(failing=True, min_response_time=0)
        if status != 200 or not isinstance(payload, dict):
            return Health(failing=True, min_response_time=0)
        return Health(bool(payload.get("failing")), int(payload.get("min_response_time") or 0))


def _error_for(provider: str, status: int, payload: Any) -> ProviderError:
    detail = f"HTTP {status}: {payload}"
    if status == 429:
        return ProviderBusy(provider, detail)
    if status in (404, 503):
        return ProviderUnavailable(provider, detail)
    if status in (400, 422):
        return ProviderRejected(provider, detail)
    return ProviderUncertain(provider, detail)
