"""Scenario files load and validate; overrides reach any value; bad scenarios are refused."""

from __future__ import annotations

from collections import Counter

import pytest

from simulator import scenario as sc
from simulator import schedule

pytestmark = pytest.mark.unit

REQUIRED = {
    "demo",
    "steady",
    "hot-account",
    "duplicate-storm",
    "provider-outage",
    "broker-outage",
    "worker-crash",
}


def test_the_required_scenarios_are_shipped() -> None:
    assert set(sc.shipped_names()) >= REQUIRED


@pytest.mark.parametrize("name", sc.shipped_names())
def test_each_shipped_scenario_loads_and_plans(name: str) -> None:
    scenario = sc.load(name)
    plan = schedule.build(scenario, "t")

    assert scenario.name == name
    assert scenario.description
    assert plan.sends, "a scenario that sends nothing"
    # Rates that suit a 2-core machine running the whole stack.
    assert 3 <= schedule.expected_rate(scenario) <= 30
    assert len(plan.accounts) == scenario.accounts.count


@pytest.mark.parametrize("name", sc.shipped_names())
def test_provider_knobs_in_scenarios_are_ones_the_provider_knows(name: str) -> None:
    known = {
        "latency_distribution",
        "latency_p50_ms",
        "latency_p99_ms",
        "failure_rate",
        "decline_rate",
        "decline_amount_suffix",
        "timeout_rate",
        "timeout_ms",
        "max_concurrency",
        "outage",
    }
    for step in sc.load(name).provider:
        assert set(step.knobs) <= known


def test_overrides_reach_nested_values() -> None:
    scenario = sc.load(
        "demo", [("arrival.rate", 3), ("duration", 5), sc.parse_override("hot.share=0.9")]
    )

    assert scenario.arrival.rate == 3
    assert scenario.duration == 5
    assert scenario.hot is not None and scenario.hot.share == 0.9


def test_an_override_value_is_read_as_yaml() -> None:
    assert sc.parse_override("notifications.webpush=false") == ("notifications.webpush", False)
    assert sc.parse_override("amounts.min=7") == ("amounts.min", 7)


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        ("arrival.profile", "zigzag", "arrival.profile"),
        ("arrival.rate", -1, "arrival.rate"),
        ("duplicates.share", 1.5, "share"),
        ("amounts.min", 0, "amounts.min"),
        ("accounts.count", 0, "accounts.count"),
        ("chaos", [{"at": 1, "action": "unplug"}], "chaos action"),
        ("chaos", [{"at": 1, "action": "stop-kafka"}], "duration"),
        ("chaos", [{"at": 1, "action": "kill-worker"}], "function"),
        ("provider", [{"at": 1, "provider": "third", "knobs": {"outage": True}}], "provider"),
        ("colour", "blue", "unknown"),
        ("warmup", -1, "warmup"),
    ],
)
def test_invalid_scenarios_are_refused(path: str, value: object, complaint: str) -> None:
    with pytest.raises(sc.ScenarioError, match=complaint):
        sc.load("demo", [(path, value)])


def test_a_run_shortened_to_its_warm_up_or_less_has_none() -> None:
    assert sc.load("demo").warmup == 10
    assert sc.load("demo", [("duration", 30)]).warmup == 10
    assert sc.load("demo", [("duration", 10)]).warmup == 0


def test_an_unknown_scenario_names_the_shipped_ones() -> None:
    with pytest.raises(sc.ScenarioError, match="demo"):
        sc.load("no-such-scenario")


def test_the_schedule_is_fixed_by_the_seed() -> None:
    scenario = sc.load("demo")

    first = schedule.build(scenario, "r")
    again = schedule.build(scenario, "r")
    other = schedule.build(sc.load("demo", [("seed", 99)]), "r")

    assert first == again
    assert [s.at for s in first.sends] != [s.at for s in other.sends]


def test_the_schedule_follows_rate_hot_share_and_duplicates() -> None:
    scenario = sc.load(
        "demo",
        [
            ("duration", 200),
            ("arrival.rate", 10),
            ("duplicates.share", 0.2),
            ("duplicates.copies", 2),
        ],
    )
    plan = schedule.build(scenario, "r")

    payments = plan.payments
    originals = [s for s in plan.sends if s.kind == "original"]
    hot = sum(1 for s in originals if s.account_id == plan.accounts[0].account_id)
    duplicated = Counter(s.payment_index for s in plan.sends if s.kind != "original")

    assert payments == len(originals)
    assert 0.85 * 2000 < payments < 1.15 * 2000  # 10/s for 200 s, Poisson
    assert 0.25 < hot / payments < 0.35
    assert 0.15 < len(duplicated) / payments < 0.25
    assert set(duplicated.values()) == {2}
    for send in plan.sends:
        if send.kind == "concurrent-duplicate":
            original = next(o for o in originals if o.payment_index == send.payment_index)
            assert send.at == original.at and send.idempotency_key == original.idempotency_key


def test_a_ramp_sends_more_at_the_end_than_at_the_start() -> None:
    scenario = sc.load(
        "hot-account",
        [
            ("duration", 100),
            ("arrival.process", "uniform"),
            ("arrival.rate", 10),
            ("arrival.peak", 30),
        ],
    )
    times = schedule.arrival_times(scenario, random_source())

    first_tenth = sum(1 for t in times if t < 10)
    last_tenth = sum(1 for t in times if t >= 90)

    assert first_tenth == pytest.approx(10 * 11, abs=3)  # about 11/s at the start
    assert last_tenth == pytest.approx(10 * 29, abs=3)  # about 29/s at the end


def test_a_burst_packs_its_window() -> None:
    scenario = sc.load(
        "duplicate-storm",
        [
            ("arrival.process", "uniform"),
            ("arrival.rate", 8),
            ("arrival.bursts", [{"at": 10, "duration": 3, "rate": 25}]),
        ],
    )
    times = schedule.arrival_times(scenario, random_source())

    in_burst = sum(1 for t in times if 10 <= t < 13)

    assert in_burst == pytest.approx(3 * 25, abs=2)
    assert sum(1 for t in times if 0 <= t < 3) == pytest.approx(3 * 8, abs=2)


def random_source():
    import random

    return random.Random(0)
