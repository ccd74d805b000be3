"""The figures of a run, computed from its raw record: counts, percentiles, series per second.

Pure functions over the outcomes and notifications, so a report can be rendered again from the
saved run without the system.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from simulator.invariants import FINAL_TYPES
from simulator.latency import distribution, from_values_ms, percentiles

FINAL_STATUSES = set(FINAL_TYPES.values())
CATEGORIES = ("accepted", "insufficient-funds", "in-flight", "error", "dropped")


def _lateness(o: dict[str, Any]) -> float | None:
    return None if o.get("sent") is None else (o["sent"] - o["intended"]) * 1000


def _latency(o: dict[str, Any]) -> float | None:
    if o.get("done") is None or o.get("status") is None:
        return None
    return (o["done"] - o["intended"]) * 1000


def category(o: dict[str, Any]) -> str:
    if o.get("dropped"):
        return "dropped"
    if o.get("status") in (200, 201) and o.get("payment_id"):
        return "accepted"
    if o.get("status") == 422 and str(o.get("problem") or "").endswith("insufficient-funds"):
        return "insufficient-funds"
    if o.get("status") == 409:
        return "in-flight"
    return "error"


def _key_starts(outcomes: list[dict[str, Any]]) -> dict[str, float]:
    """Each Idempotency-Key's first intended send: when its payment was first asked for."""
    starts: dict[str, float] = {}
    for o in outcomes:
        starts[o["idempotency_key"]] = min(starts.get(o["idempotency_key"], 1e18), o["intended"])
    return starts


def measured(outcomes: list[dict[str, Any]], warmup_s: float) -> list[dict[str, Any]]:
    """The sends of payments first asked for after the warm-up. The warm-up's payments are
    real (they are counted, and the invariants check them); only the latency percentiles leave
    them out, since they mostly time the cold starts of the workers that a rising load adds."""
    if warmup_s <= 0:
        return outcomes
    starts = _key_starts(outcomes)
    return [o for o in outcomes if starts[o["idempotency_key"]] >= warmup_s]


def warmup_note(figures: dict[str, Any]) -> str:
    """One line saying what the percentiles leave out, or "" when they leave out nothing."""
    warmup = figures.get("warmup_s") or 0
    if warmup <= 0:
        return ""
    left_out = figures["sends_planned"] - figures.get("measured_sends", figures["sends_planned"])
    return (
        f"Latency after a {warmup:g} s warm-up: its {left_out} sends are counted and checked, "
        "not timed."
    )


def end_to_end(
    outcomes: list[dict[str, Any]], notifications: list[dict[str, Any]]
) -> dict[str, list[float]]:
    """Per notification kind, ms from a payment's intended first send to its final status
    notification's arrival (the first subscription of that kind to get it)."""
    intended: dict[str, float] = {}
    key_start = _key_starts(outcomes)
    for o in outcomes:
        if o.get("payment_id"):
            intended[o["payment_id"]] = key_start[o["idempotency_key"]]
    first: dict[tuple[str, str], float] = {}
    for n in notifications:
        pid = n.get("payment_id")
        if n.get("status") in FINAL_STATUSES and pid in intended and n.get("received") is not None:
            k = (n.get("kind", "webhook"), pid)
            first[k] = min(first.get(k, 1e18), n["received"])
    result: dict[str, list[float]] = defaultdict(list)
    for (kind, pid), received in first.items():
        result[kind].append((received - intended[pid]) * 1000)
    return dict(result)


def redelivered(notifications: list[dict[str, Any]]) -> int:
    """Copies of a message a subscription had already received (same event id)."""
    distinct = {(n.get("subscription_id"), n.get("event_id")) for n in notifications}
    return len(notifications) - len(distinct)


def series(outcomes: list[dict[str, Any]], late_threshold_ms: float) -> list[dict[str, Any]]:
    """One row per second of intended send time: counts per category, late, p50/p99/max."""
    if not outcomes:
        return []
    last = max(o["intended"] for o in outcomes)
    seconds = math.floor(last) + 1
    rows = [
        {"t": s, "intended": 0, "late": 0, "latencies": [], **dict.fromkeys(CATEGORIES, 0)}
        for s in range(seconds)
    ]
    for o in outcomes:
        row = rows[int(o["intended"])]
        row["intended"] += 1
        row[category(o)] += 1
        lateness = _lateness(o)
        if lateness is not None and lateness > late_threshold_ms:
            row["late"] += 1
        latency = _latency(o)
        if latency is not None:
            row["latencies"].append(latency)
    for row in rows:
        p = percentiles(from_values_ms(row.pop("latencies")))
        row.update(p50_ms=p.p50, p99_ms=p.p99, max_ms=p.max)
    return rows


def compute(
    outcomes: list[dict[str, Any]],
    notifications: list[dict[str, Any]],
    *,
    duration_s: float,
    late_threshold_ms: float,
    warmup_s: float = 0.0,
) -> dict[str, Any]:
    counts = dict.fromkeys(CATEGORIES, 0)
    for o in outcomes:
        counts[category(o)] += 1
    attempted = len(outcomes)
    sent = sum(1 for o in outcomes if o.get("sent") is not None)
    answered = sum(1 for o in outcomes if o.get("status") is not None)
    late = sum(1 for o in outcomes if (_lateness(o) or 0) > late_threshold_ms)
    timed = measured(outcomes, warmup_s)
    api_values = [v for o in timed if (v := _latency(o)) is not None]
    accepted_values = [v for o in timed if category(o) == "accepted" and (v := _latency(o))]
    api = from_values_ms(api_values)
    e2e = end_to_end(timed, notifications)
    statuses: dict[str, int] = defaultdict(int)
    for o in outcomes:
        statuses[str(o.get("status") or "none")] += 1
    payments = {o["payment_id"] for o in outcomes if o.get("payment_id")}
    return {
        "sends_planned": attempted,
        "sent": sent,
        "answered": answered,
        "late": late,
        "late_share": late / sent if sent else 0.0,
        "dropped": counts["dropped"],
        "errors": counts["error"],
        "error_rate": counts["error"] / attempted if attempted else 0.0,
        "categories": counts,
        "http_statuses": dict(statuses),
        "payments_accepted": len(payments),
        "payment_keys": len({o["idempotency_key"] for o in outcomes}),
        "offered_rate": len({o["idempotency_key"] for o in outcomes}) / duration_s,
        "warmup_s": warmup_s,
        "measured_sends": len(timed),
        "api_latency": percentiles(api).as_dict(),
        "api_latency_accepted": percentiles(from_values_ms(accepted_values)).as_dict(),
        "api_distribution": distribution(api),
        "e2e_latency": {k: percentiles(from_values_ms(v)).as_dict() for k, v in e2e.items()},
        "e2e_distribution": {k: distribution(from_values_ms(v)) for k, v in e2e.items()},
        "notifications": len(notifications),
        "notifications_redelivered": redelivered(notifications),
        "series": series(outcomes, late_threshold_ms),
        "latency_points": [
            [round(o["intended"], 3), round(v, 2), category(o)]
            for o in outcomes
            if (v := _latency(o)) is not None
        ],
    }
