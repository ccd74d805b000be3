"""The send schedule, computed in full before the run starts (open model).

Every send has an intended offset from the start of the run. The runner fires each one at its
offset whatever happened to the earlier ones, so a slow system cannot slow the load down and
hide its own latency (coordinated omission). The same scenario and seed give the same schedule.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from simulator.scenario import Scenario


@dataclass(frozen=True)
class AccountPlan:
    index: int
    account_id: str
    currency: str
    limit: int
    balance: int
    hot: bool


@dataclass(frozen=True)
class Send:
    """One HTTP POST /payments to make at ``at`` seconds after the start."""

    seq: int
    at: float
    payment_index: int  # which logical payment (several sends may share it: duplicates)
    account_id: str
    amount: int
    currency: str
    idempotency_key: str
    kind: str  # original | concurrent-duplicate | retry-duplicate


@dataclass(frozen=True)
class Plan:
    run_id: str
    accounts: tuple[AccountPlan, ...]
    sends: tuple[Send, ...]

    @property
    def payments(self) -> int:
        return len({s.payment_index for s in self.sends})


def arrival_times(scenario: Scenario, rng: random.Random) -> list[float]:
    """Offsets of the payments' first sends, following the arrival profile.

    A Poisson process with a time-varying rate is drawn by thinning: candidates at the peak rate,
    each kept with probability rate(t)/peak. The uniform process spaces arrivals evenly by
    integrating the rate, which makes tests and demos reproducible to the millisecond.
    """
    arrival = scenario.arrival
    duration = scenario.duration
    if arrival.process == "uniform":
        times: list[float] = []
        t, budget = 0.0, 0.0
        step = 0.001
        while t < duration:
            budget += arrival.rate_at(t, duration) * step
            if budget >= 1.0:
                budget -= 1.0
                times.append(round(t, 6))
            t += step
        return times

    peak = arrival.max_rate()
    times = []
    t = 0.0
    while True:
        t += rng.expovariate(peak)
        if t >= duration:
            return times
        if rng.random() <= arrival.rate_at(t, duration) / peak:
            times.append(t)


def plan_accounts(scenario: Scenario, run_id: str) -> tuple[AccountPlan, ...]:
    accounts = []
    group = scenario.accounts
    for index in range(group.count):
        hot = scenario.hot is not None and index == 0
        accounts.append(
            AccountPlan(
                index=index,
                account_id=f"sim-{run_id}-{index:04d}",
                currency=group.currency,
                limit=scenario.hot.limit if hot else group.limit,
                balance=scenario.hot.balance if hot else group.balance,
                hot=hot,
            )
        )
    return tuple(accounts)


def _pick_account(
    scenario: Scenario, accounts: tuple[AccountPlan, ...], rng: random.Random
) -> AccountPlan:
    if scenario.hot is not None and (len(accounts) == 1 or rng.random() < scenario.hot.share):
        return accounts[0]
    first = 1 if scenario.hot is not None else 0
    return accounts[rng.randrange(first, len(accounts))]


def build(scenario: Scenario, run_id: str) -> Plan:
    """The whole plan of a run: accounts to open and every send with its intended time."""
    rng = random.Random(scenario.seed)
    accounts = plan_accounts(scenario, run_id)
    sends: list[Send] = []
    dup = scenario.duplicates

    for payment_index, at in enumerate(arrival_times(scenario, rng)):
        account = _pick_account(scenario, accounts, rng)
        amount = rng.randint(scenario.amounts.min, scenario.amounts.max)
        key = f"{run_id}-p{payment_index:06d}"
        base = {
            "payment_index": payment_index,
            "account_id": account.account_id,
            "amount": amount,
            "currency": account.currency,
            "idempotency_key": key,
        }
        sends.append(Send(seq=0, at=at, kind="original", **base))
        if dup.share > 0 and rng.random() < dup.share:
            concurrent = rng.random() < dup.concurrent_share
            for copy_index in range(dup.copies):
                if concurrent:
                    sends.append(Send(seq=0, at=at, kind="concurrent-duplicate", **base))
                else:
                    later = at + dup.delay * (copy_index + 1)
                    sends.append(Send(seq=0, at=later, kind="retry-duplicate", **base))

    ordered = sorted(sends, key=lambda s: (s.at, s.payment_index, s.kind != "original"))
    numbered = tuple(
        Send(
            seq=i,
            at=s.at,
            payment_index=s.payment_index,
            account_id=s.account_id,
            amount=s.amount,
            currency=s.currency,
            idempotency_key=s.idempotency_key,
            kind=s.kind,
        )
        for i, s in enumerate(ordered)
    )
    return Plan(run_id=run_id, accounts=accounts, sends=numbered)


def expected_rate(scenario: Scenario) -> float:
    """The mean intended payment rate over the run (for summaries)."""
    steps = max(1, math.ceil(scenario.duration * 10))
    total = sum(
        scenario.arrival.rate_at(i * scenario.duration / steps, scenario.duration)
        for i in range(steps)
    )
    return total / steps
