"""Scenarios are data: YAML files under simulator/scenarios/, validated into frozen dataclasses.

A scenario says who pays (accounts), how often (arrival), how much (amounts), how often a client
retries with the same Idempotency-Key, what the provider and the infrastructure do over time
(provider steps, chaos steps) and what must hold at the end (SLOs). Every value can be overridden
from the command line by its dotted path (``arrival.rate=20``); a run shortened that way skips
the provider steps, chaos steps and bursts that would fall after its end, and a warm-up that would
fill it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"

ARRIVAL_PROFILES = ("steady", "ramp", "burst")
ARRIVAL_PROCESSES = ("poisson", "uniform")
CHAOS_ACTIONS = ("stop-kafka", "kill-worker", "restart-postgres")
PROVIDERS = ("default", "fallback")


class ScenarioError(ValueError):
    """A scenario file or override that does not describe a runnable scenario."""


@dataclass(frozen=True)
class Burst:
    at: float
    duration: float
    rate: float


@dataclass(frozen=True)
class Arrival:
    profile: str
    rate: float
    peak: float | None
    process: str
    bursts: tuple[Burst, ...]

    def rate_at(self, t: float, duration: float) -> float:
        """The intended arrival rate (payments/s) at offset t of a run lasting duration."""
        if self.profile == "ramp":
            peak = self.peak if self.peak is not None else self.rate
            return self.rate + (peak - self.rate) * min(max(t / duration, 0.0), 1.0)
        if self.profile == "burst":
            for burst in self.bursts:
                if burst.at <= t < burst.at + burst.duration:
                    return burst.rate
        return self.rate

    def max_rate(self) -> float:
        candidates = [self.rate, self.peak or 0.0, *(b.rate for b in self.bursts)]
        return max(candidates)


@dataclass(frozen=True)
class AccountGroup:
    count: int
    currency: str
    limit: int
    balance: int


@dataclass(frozen=True)
class HotAccount:
    share: float
    limit: int
    balance: int


@dataclass(frozen=True)
class Amounts:
    min: int
    max: int


@dataclass(frozen=True)
class Duplicates:
    share: float  # of payments, resent with the same key and body
    concurrent_share: float  # of those duplicates, sent at the same instant as the original
    copies: int  # extra sends per duplicated payment
    delay: float  # seconds after the original for the sequential retries


@dataclass(frozen=True)
class ProviderStep:
    at: float
    provider: str
    knobs: dict[str, Any]


@dataclass(frozen=True)
class ChaosStep:
    at: float
    action: str
    duration: float  # stop-kafka: how long the broker stays down
    function: str | None  # kill-worker: which function's workers die


@dataclass(frozen=True)
class Slo:
    api_p99_ms: float | None
    e2e_p99_ms: float | None
    max_error_rate: float
    max_late_share: float
    max_dropped: int
    min_accepted_share: float
    max_redelivered: int = 0


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    seed: int
    duration: float
    warmup: float  # the first seconds of load, left out of the latency percentiles
    arrival: Arrival
    accounts: AccountGroup
    hot: HotAccount | None
    amounts: Amounts
    duplicates: Duplicates
    provider: tuple[ProviderStep, ...]
    chaos: tuple[ChaosStep, ...]
    slo: Slo
    late_threshold_ms: float
    drop_after_s: float
    max_in_flight: int
    request_timeout_s: float
    drain_timeout_s: float
    settle_timeout_s: float
    webhook: bool
    webpush: bool
    raw: dict[str, Any] = field(repr=False, compare=False)


# The defaults every scenario file starts from; a file only says what differs.
DEFAULTS: dict[str, Any] = {
    "description": "",
    "seed": 1,
    "duration": 30,
    "warmup": 0,
    "arrival": {"profile": "steady", "rate": 10, "peak": None, "process": "poisson", "bursts": []},
    "accounts": {"count": 10, "currency": "EUR", "limit": 1_000_000, "balance": 0},
    "hot": None,
    "amounts": {"min": 100, "max": 5_000},
    "duplicates": {"share": 0.0, "concurrent_share": 0.5, "copies": 1, "delay": 0.5},
    "provider": [],
    "chaos": [],
    "slo": {
        "api_p99_ms": None,
        "e2e_p99_ms": None,
        "max_error_rate": 0.0,
        "max_late_share": 0.01,
        "max_dropped": 0,
        "min_accepted_share": 0.0,
        "max_redelivered": 0,
    },
    "late_threshold_ms": 50,
    "drop_after_s": 10,
    "max_in_flight": 256,
    "request_timeout_s": 15,
    "drain_timeout_s": 90,
    "settle_timeout_s": 30,
    "notifications": {"webhook": True, "webpush": True},
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_override(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set a dotted path (``arrival.rate``) in a raw scenario mapping, returning a new mapping."""
    updated = copy.deepcopy(raw)
    node = updated
    parts = path.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value
    return updated


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=value`` -> ("a.b", value), the value read as YAML so numbers stay numbers."""
    if "=" not in text:
        raise ScenarioError(f"override {text!r} is not of the form path=value")
    path, _, value = text.partition("=")
    return path.strip(), yaml.safe_load(value) if value.strip() else None


def _number(raw: dict[str, Any], key: str, where: str, *, minimum: float = 0.0) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"{where}{key} must be a number, got {value!r}")
    if value < minimum:
        raise ScenarioError(f"{where}{key} must be >= {minimum}, got {value}")
    return float(value)


def _int(raw: dict[str, Any], key: str, where: str, *, minimum: int = 0) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(f"{where}{key} must be an integer, got {value!r}")
    if value < minimum:
        raise ScenarioError(f"{where}{key} must be >= {minimum}, got {value}")
    return value


def _share(raw: dict[str, Any], key: str, where: str) -> float:
    value = _number(raw, key, where)
    if value > 1:
        raise ScenarioError(f"{where}{key} is a share between 0 and 1, got {value}")
    return value


def _optional_number(raw: dict[str, Any], key: str, where: str) -> float | None:
    return None if raw.get(key) is None else _number(raw, key, where)


def _arrival(raw: dict[str, Any], duration: float) -> Arrival:
    profile = raw.get("profile")
    if profile not in ARRIVAL_PROFILES:
        raise ScenarioError(f"arrival.profile must be one of {ARRIVAL_PROFILES}, got {profile!r}")
    process = raw.get("process")
    if process not in ARRIVAL_PROCESSES:
        raise ScenarioError(f"arrival.process must be one of {ARRIVAL_PROCESSES}")
    bursts = tuple(
        Burst(
            at=_number(b, "at", "arrival.bursts[]."),
            duration=_number(b, "duration", "arrival.bursts[].", minimum=0.001),
            rate=_number(b, "rate", "arrival.bursts[].", minimum=0.001),
        )
        for b in raw.get("bursts") or []
    )
    if profile == "burst" and not bursts:
        raise ScenarioError("arrival.profile burst needs arrival.bursts")
    bursts = tuple(b for b in bursts if b.at < duration)
    peak = _optional_number(raw, "peak", "arrival.")
    if profile == "ramp" and peak is None:
        raise ScenarioError("arrival.profile ramp needs arrival.peak")
    return Arrival(
        profile=profile,
        rate=_number(raw, "rate", "arrival.", minimum=0.001),
        peak=peak,
        process=process,
        bursts=bursts,
    )


def _provider_steps(raw: list[Any], duration: float) -> tuple[ProviderStep, ...]:
    steps = []
    for item in raw:
        if not isinstance(item, dict):
            raise ScenarioError(f"provider steps are mappings, got {item!r}")
        provider = item.get("provider", "default")
        if provider not in PROVIDERS:
            raise ScenarioError(f"provider must be one of {PROVIDERS}, got {provider!r}")
        knobs = item.get("knobs")
        if not isinstance(knobs, dict) or not knobs:
            raise ScenarioError("each provider step needs a non-empty knobs mapping")
        at = _number(item, "at", "provider[].")
        if at >= duration:
            continue  # a run shortened from the command line skips what falls after its end
        steps.append(ProviderStep(at=at, provider=provider, knobs=dict(knobs)))
    return tuple(sorted(steps, key=lambda s: s.at))


def _chaos_steps(raw: list[Any], duration: float) -> tuple[ChaosStep, ...]:
    steps = []
    for item in raw:
        if not isinstance(item, dict):
            raise ScenarioError(f"chaos steps are mappings, got {item!r}")
        action = item.get("action")
        if action not in CHAOS_ACTIONS:
            raise ScenarioError(f"chaos action must be one of {CHAOS_ACTIONS}, got {action!r}")
        function = item.get("function")
        if action == "kill-worker" and not function:
            raise ScenarioError("chaos kill-worker needs a function (e.g. ProcessorFunction)")
        at = _number(item, "at", "chaos[].")
        step_duration = float(item.get("duration", 0) or 0)
        if action == "stop-kafka" and step_duration <= 0:
            raise ScenarioError("chaos stop-kafka needs a duration > 0")
        if at >= duration:
            continue  # as for provider steps: outside a shortened run
        steps.append(ChaosStep(at=at, action=action, duration=step_duration, function=function))
    return tuple(sorted(steps, key=lambda s: s.at))


def from_mapping(raw_in: dict[str, Any]) -> Scenario:
    """Validate a raw mapping (a file merged over the defaults) into a Scenario."""
    if not isinstance(raw_in, dict):
        raise ScenarioError("a scenario is a mapping")
    raw = _merge(DEFAULTS, raw_in)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ScenarioError("a scenario needs a name")
    duration = _number(raw, "duration", "", minimum=0.1)
    # Like the steps after its end, a warm-up that would fill a shortened run is dropped.
    warmup = _number(raw, "warmup", "")
    if warmup >= duration:
        warmup = 0.0

    accounts_raw = raw["accounts"]
    accounts = AccountGroup(
        count=_int(accounts_raw, "count", "accounts.", minimum=1),
        currency=str(accounts_raw.get("currency", "EUR")),
        limit=_int(accounts_raw, "limit", "accounts."),
        balance=_int(accounts_raw, "balance", "accounts."),
    )
    if len(accounts.currency) != 3:
        raise ScenarioError("accounts.currency is an ISO 4217 code")

    hot = None
    if raw.get("hot"):
        hot_raw = _merge({"limit": accounts.limit, "balance": accounts.balance}, raw["hot"])
        hot = HotAccount(
            share=_share(hot_raw, "share", "hot."),
            limit=_int(hot_raw, "limit", "hot."),
            balance=_int(hot_raw, "balance", "hot."),
        )

    amounts = Amounts(
        min=_int(raw["amounts"], "min", "amounts.", minimum=1),
        max=_int(raw["amounts"], "max", "amounts.", minimum=1),
    )
    if amounts.max < amounts.min:
        raise ScenarioError("amounts.max must be >= amounts.min")

    dup_raw = raw["duplicates"]
    duplicates = Duplicates(
        share=_share(dup_raw, "share", "duplicates."),
        concurrent_share=_share(dup_raw, "concurrent_share", "duplicates."),
        copies=_int(dup_raw, "copies", "duplicates.", minimum=1),
        delay=_number(dup_raw, "delay", "duplicates."),
    )

    slo_raw = raw["slo"]
    slo = Slo(
        api_p99_ms=_optional_number(slo_raw, "api_p99_ms", "slo."),
        e2e_p99_ms=_optional_number(slo_raw, "e2e_p99_ms", "slo."),
        max_error_rate=_share(slo_raw, "max_error_rate", "slo."),
        max_late_share=_share(slo_raw, "max_late_share", "slo."),
        max_dropped=_int(slo_raw, "max_dropped", "slo."),
        min_accepted_share=_share(slo_raw, "min_accepted_share", "slo."),
        max_redelivered=_int(slo_raw, "max_redelivered", "slo."),
    )

    notifications = raw.get("notifications") or {}
    known = set(DEFAULTS) | {"name", "notifications"}
    unknown = set(raw) - known
    if unknown:
        raise ScenarioError(f"unknown scenario keys: {sorted(unknown)}")

    return Scenario(
        name=name,
        description=str(raw.get("description") or ""),
        seed=_int(raw, "seed", ""),
        duration=duration,
        warmup=warmup,
        arrival=_arrival(raw["arrival"], duration),
        accounts=accounts,
        hot=hot,
        amounts=amounts,
        duplicates=duplicates,
        provider=_provider_steps(raw.get("provider") or [], duration),
        chaos=_chaos_steps(raw.get("chaos") or [], duration),
        slo=slo,
        late_threshold_ms=_number(raw, "late_threshold_ms", "", minimum=1),
        drop_after_s=_number(raw, "drop_after_s", "", minimum=0.001),
        max_in_flight=_int(raw, "max_in_flight", "", minimum=1),
        request_timeout_s=_number(raw, "request_timeout_s", "", minimum=0.1),
        drain_timeout_s=_number(raw, "drain_timeout_s", ""),
        settle_timeout_s=_number(raw, "settle_timeout_s", ""),
        webhook=bool(notifications.get("webhook", True)),
        webpush=bool(notifications.get("webpush", True)),
        raw=raw,
    )


def scenario_path(name_or_path: str) -> Path:
    """A shipped scenario by name (``demo``) or any file by path."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml", ".json") and candidate.exists():
        return candidate
    shipped = SCENARIO_DIR / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    raise ScenarioError(
        f"no scenario {name_or_path!r}; shipped: {', '.join(shipped_names())} (or give a path)"
    )


def shipped_names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def load_raw(name_or_path: str) -> dict[str, Any]:
    path = scenario_path(name_or_path)
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path} does not hold a mapping")
    raw.setdefault("name", path.stem)
    return raw


def load(name_or_path: str, overrides: list[tuple[str, Any]] = ()) -> Scenario:
    raw = load_raw(name_or_path)
    for path, value in overrides:
        raw = apply_override(raw, path, value)
    return from_mapping(raw)
