"""Figures from a run's raw record, the timeline player, and the SLO judge."""

from __future__ import annotations

import asyncio

import pytest

from simulator import figures, slo, timeline
from simulator import scenario as sc

pytestmark = pytest.mark.unit


def outcome(key: str, intended: float, done: float, pid: str | None, status: int = 201) -> dict:
    return {
        "idempotency_key": key,
        "intended": intended,
        "sent": intended,
        "done": done,
        "status": status,
        "payment_id": pid,
        "problem": None,
        "dropped": False,
    }


def test_end_to_end_runs_from_the_first_send_to_the_first_final_notification() -> None:
    outcomes = [
        outcome("k1", 1.0, 1.2, "p1"),
        outcome("k1", 1.5, 1.6, "p1"),  # a retry of the same payment, half a second later
        outcome("k2", 2.0, 2.1, "p2"),
    ]
    notifications = [
        {"kind": "webhook", "payment_id": "p1", "status": "pending", "received": 1.3},
        {"kind": "webhook", "payment_id": "p1", "status": "authorized", "received": 3.0},
        {"kind": "webhook", "payment_id": "p1", "status": "authorized", "received": 3.5},
        {"kind": "webpush", "payment_id": "p1", "status": "authorized", "received": 4.0},
        {"kind": "webhook", "payment_id": "p2", "status": "declined", "received": 2.5},
    ]

    e2e = figures.end_to_end(outcomes, notifications)

    assert sorted(e2e["webhook"]) == pytest.approx([500.0, 2000.0])
    assert e2e["webpush"] == pytest.approx([3000.0])


def test_compute_counts_categories_late_sends_and_latency() -> None:
    late = outcome("k3", 0.5, 0.9, "p3")
    late["sent"] = 0.7  # 200 ms behind its intended instant
    outcomes = [
        outcome("k1", 0.0, 0.1, "p1"),
        outcome("k2", 0.2, 0.3, None, status=422) | {"problem": "x/insufficient-funds"},
        late,
        {"idempotency_key": "k4", "intended": 1.0, "dropped": True},
    ]

    result = figures.compute(outcomes, [], duration_s=2, late_threshold_ms=50)

    assert result["categories"] == {
        "accepted": 2,
        "insufficient-funds": 1,
        "in-flight": 0,
        "error": 0,
        "dropped": 1,
    }
    assert result["late"] == 1
    assert result["api_latency"]["count"] == 3
    assert result["api_latency"]["max_ms"] == pytest.approx(400, rel=0.01)
    assert [row["intended"] for row in result["series"]] == [3, 1]


def test_the_warm_up_is_counted_but_not_timed() -> None:
    cold = outcome("k1", 0.5, 4.5, "p1")  # 4 s: a cold start
    retried_late = outcome("k1", 11.0, 11.1, "p1")  # its retry falls after the warm-up
    failed = outcome("k2", 1.0, 1.1, None, status=500)
    warm = outcome("k3", 12.0, 12.05, "p3")
    notifications = [
        {"kind": "webhook", "payment_id": "p1", "status": "authorized", "received": 6.0},
        {"kind": "webhook", "payment_id": "p3", "status": "authorized", "received": 12.3},
    ]

    result = figures.compute(
        [cold, retried_late, failed, warm],
        notifications,
        duration_s=20,
        late_threshold_ms=50,
        warmup_s=10,
    )

    assert result["errors"] == 1
    assert result["sends_planned"] == 4 and result["measured_sends"] == 1
    assert result["api_latency"]["count"] == 1
    assert result["api_latency"]["max_ms"] == pytest.approx(50, rel=0.01)
    assert result["e2e_latency"]["webhook"]["count"] == 1
    assert result["e2e_latency"]["webhook"]["max_ms"] == pytest.approx(300, rel=0.01)
    assert len(result["latency_points"]) == 4  # the plot over time still shows the warm-up
    assert "10 s warm-up: its 3 sends" in figures.warmup_note(result)

    unwarmed = figures.compute(
        [cold, retried_late, failed, warm], notifications, duration_s=20, late_threshold_ms=50
    )
    assert unwarmed["api_latency"]["count"] == 4
    assert figures.warmup_note(unwarmed) == ""


def test_slos_fail_when_figures_pass_their_targets() -> None:
    scenario = sc.load("demo")
    base = figures.compute([outcome("k", 0, 0.1, "p")], [], duration_s=1, late_threshold_ms=50)
    base["e2e_latency"] = {"webhook": {"p99_ms": 100.0}}

    assert all(s.ok for s in slo.judge(scenario.slo, base, drained=True, pending=0))

    slow = base | {"api_latency": base["api_latency"] | {"p99_ms": 5000.0}}
    failed = [s.name for s in slo.judge(scenario.slo, slow, drained=False, pending=3) if not s.ok]
    assert failed == ["drained", "API p99"]

    copied = base | {"notifications_redelivered": 2}
    failed = [s.name for s in slo.judge(scenario.slo, copied, drained=True, pending=0) if not s.ok]
    assert failed == ["redelivered notifications"]


def test_a_scenario_that_kills_the_notifier_may_allow_redeliveries() -> None:
    scenario = sc.load("worker-crash")
    base = figures.compute([outcome("k", 0, 0.1, "p")], [], duration_s=1, late_threshold_ms=50)
    base["e2e_latency"] = {"webhook": {"p99_ms": 100.0}}
    copied = base | {"notifications_redelivered": scenario.slo.max_redelivered}

    assert scenario.slo.max_redelivered > 0
    assert all(s.ok for s in slo.judge(scenario.slo, copied, drained=True, pending=0))


def test_a_failing_timeline_step_is_reported_and_the_others_still_run() -> None:
    done: list[str] = []

    def broken() -> None:
        raise RuntimeError("lever stuck")

    steps = [
        timeline.Step(0.0, "first", lambda: done.append("first")),
        timeline.Step(0.01, "broken", broken),
        timeline.Step(0.02, "last", lambda: done.append("last")),
    ]

    async def play() -> list[timeline.Happening]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        return await timeline.play(steps, lambda: loop.time() - start)

    happenings = asyncio.run(play())

    assert done == ["first", "last"]
    assert [h.error for h in happenings] == [None, "RuntimeError: lever stuck", None]
