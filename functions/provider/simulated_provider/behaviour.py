"""What the provider decides and how long it takes, given its knobs. No I/O here."""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

# z-score of the 99th percentile of the standard normal distribution.
_Z99 = 2.3263478740408408

LATENCY_DISTRIBUTIONS = ("lognormal", "fixed")


class InvalidKnobs(ValueError):
    """A knob update that names an unknown knob or carries a value out of range."""


@dataclass(frozen=True)
class Knobs:
    latency_distribution: str = "lognormal"
    latency_p50_ms: float = 20.0
    latency_p99_ms: float = 80.0
    failure_rate: float = 0.0
    decline_rate: float = 0.0
    decline_amount_suffix: str = ""
    timeout_rate: float = 0.0
    timeout_ms: int = 5000
    max_concurrency: int = 20
    outage: bool = False

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def updated(self, changes: dict[str, Any]) -> Knobs:
        """A copy with the changes applied, checked as a whole (p99 must not be below p50...)."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise InvalidKnobs(f"unknown knobs: {', '.join(unknown)}")
        coerced = {name: _coerce(name, value) for name, value in changes.items()}
        knobs = replace(self, **coerced)
        knobs.check()
        return knobs

    def check(self) -> None:
        if self.latency_distribution not in LATENCY_DISTRIBUTIONS:
            raise InvalidKnobs(f"latency_distribution must be one of {LATENCY_DISTRIBUTIONS}")
        if self.latency_p50_ms < 0 or self.latency_p99_ms < self.latency_p50_ms:
            raise InvalidKnobs("latency needs 0 <= latency_p50_ms <= latency_p99_ms")
        for rate in ("failure_rate", "decline_rate", "timeout_rate"):
            if not 0.0 <= getattr(self, rate) <= 1.0:
                raise InvalidKnobs(f"{rate} must be between 0 and 1")
        if self.timeout_ms < 0:
            raise InvalidKnobs("timeout_ms must not be negative")
        if not 1 <= self.max_concurrency <= 1000:
            raise InvalidKnobs("max_concurrency must be between 1 and 1000")
        if self.decline_amount_suffix and not self.decline_amount_suffix.isdigit():
            raise InvalidKnobs("decline_amount_suffix must be digits (or empty)")


def _coerce(name: str, value: Any) -> Any:
    kind = type(getattr(Knobs, name))
    if kind is bool:
        if not isinstance(value, bool):
            raise InvalidKnobs(f"{name} must be true or false")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise InvalidKnobs(f"{name} must be a string")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidKnobs(f"{name} must be a number")
    if kind is int:
        if value != int(value):
            raise InvalidKnobs(f"{name} must be an integer")
        return int(value)
    return float(value)


@dataclass(frozen=True)
class Decision:
    """What the provider does with one payment request, drawn once when it arrives."""

    fails: bool  # answer 500 without deciding anything
    declined_reason: str | None  # None: authorized
    times_out: bool  # charge, then hold the answer past any client's patience
    latency_s: float


def draw_latency(knobs: Knobs, rng: random.Random) -> float:
    """Seconds to wait before answering."""
    if knobs.latency_distribution == "fixed" or knobs.latency_p50_ms <= 0:
        return knobs.latency_p50_ms / 1000.0
    # A lognormal with median p50 has sigma such that p50 * exp(sigma * z99) = p99.
    sigma = math.log(max(knobs.latency_p99_ms, knobs.latency_p50_ms) / knobs.latency_p50_ms) / _Z99
    return knobs.latency_p50_ms * math.exp(sigma * rng.gauss(0.0, 1.0)) / 1000.0


def decide(knobs: Knobs, amount: int, rng: random.Random) -> Decision:
    fails = rng.random() < knobs.failure_rate
    declined_reason = None
    if knobs.decline_amount_suffix and str(amount).endswith(knobs.decline_amount_suffix):
        declined_reason = "card_declined"
    elif rng.random() < knobs.decline_rate:
        declined_reason = "insufficient_funds_at_issuer"
    times_out = rng.random() < knobs.timeout_rate
    return Decision(fails, declined_reason, times_out, draw_latency(knobs, rng))


def fee(amount: int, fee_bps: int) -> int:
    """The provider's fee in minor units: basis points of the amount, rounded half up."""
    return (amount * fee_bps + 5000) // 10000


def is_failing(knobs: Knobs) -> bool:
    """What the health endpoint admits: down, or failing at least half of its requests. Hanging
    requests (timeouts) it does not know about, like a real provider: clients find out."""
    return knobs.outage or knobs.failure_rate >= 0.5
