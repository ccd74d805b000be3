"""One run of a scenario: set up, load, drain, check, record.

setup   open the run's accounts, subscribe our receivers to each, note the provider's knobs
load    the open-model schedule, with provider steps and chaos steps on the same clock
drain   wait until every accepted (or reserved) payment has a final event, or time out
settle  gather the evidence and check the invariants, again until they hold or time runs out
        (read models, Kafka and notifications trail the event store by design)
record  figures, SLOs and the run folder
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from simulator import figures as figures_mod
from simulator import report_html, runs, schedule, slo, timeline
from simulator.api_client import PaymentsApi
from simulator.invariants import Evidence, check_all
from simulator.loadgen import OpenModelRunner
from simulator.notifications import Receivers
from simulator.scenario import Scenario
from simulator.system import Inspector

SETUP_CONCURRENCY = 4


def say(stream: TextIO | None, message: str) -> None:
    if stream is not None:
        print(message, file=stream, flush=True)


def new_run_id(now: datetime) -> str:
    return f"{now.strftime('%m%d%H%M%S')}{secrets.token_hex(2)}"


async def _setup(
    api: PaymentsApi, plan: schedule.Plan, receivers: Receivers, out: TextIO | None
) -> None:
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def one(account: schedule.AccountPlan) -> None:
        async with gate:
            await api.open_account(account)
            await receivers.subscribe(api, account.account_id)

    await asyncio.gather(*(one(a) for a in plan.accounts))
    say(out, f"opened {len(plan.accounts)} accounts, {len(receivers.subscriptions)} subscriptions")


async def _unsubscribe(api: PaymentsApi, receivers: Receivers, out: TextIO | None) -> None:
    """Our receivers stop with the run: leave the notifier no subscriptions it cannot reach."""
    failed = 0
    for subscription in receivers.subscriptions:
        try:
            answer = await api.unsubscribe(subscription["id"])
            failed += answer.status not in (200, 204, 404)
        except Exception:  # the stack may be gone; the subscriptions then do not matter
            failed += 1
    if failed:
        say(out, f"{failed} subscription(s) could not be deleted")


async def _drain(
    inspector: Inspector,
    account_ids: list[str],
    accepted: set[str],
    timeout_s: float,
    out: TextIO | None,
) -> dict[str, Any]:
    began = time.monotonic()
    pending: set[str] = set()
    while True:
        try:
            pending = await asyncio.to_thread(inspector.pending, account_ids, accepted)
        except Exception as exc:  # Postgres may be restarting (chaos): keep waiting
            say(out, f"drain: event store unreadable ({exc}); retrying")
            pending = set(accepted)
        waited = time.monotonic() - began
        if not pending or waited > timeout_s:
            break
        say(out, f"drain: {len(pending)} payments not final yet ({waited:.0f}s)")
        await asyncio.sleep(1.0)
    return {
        "seconds": time.monotonic() - began,
        "pending": len(pending),
        "pending_ids": sorted(pending)[:50],
        "complete": not pending,
    }


async def gather_evidence(
    inspector: Inspector,
    api: PaymentsApi | None,
    account_ids: list[str],
    outcomes: list[dict[str, Any]],
) -> Evidence:
    payment_ids = sorted({o["payment_id"] for o in outcomes if o.get("payment_id")})
    api_accounts = {}
    if api is not None:  # before the event store: see StackInspector.evidence on the order
        for account_id in account_ids:
            answer = await api.get_account(account_id)
            if answer.status == 200 and isinstance(answer.body, dict):
                api_accounts[account_id] = answer.body
    evidence = await asyncio.to_thread(inspector.evidence, account_ids, payment_ids)
    evidence.outcomes = outcomes
    evidence.api_accounts = api_accounts
    return evidence


async def _settle(
    inspector: Inspector,
    api: PaymentsApi,
    receivers: Receivers,
    wall_start: float,
    account_ids: list[str],
    outcomes: list[dict[str, Any]],
    timeout_s: float,
    out: TextIO | None,
) -> tuple[Evidence, list[dict[str, Any]]]:
    began = time.monotonic()
    while True:
        try:
            evidence = await gather_evidence(inspector, api, account_ids, outcomes)
        except Exception as exc:  # Postgres may still be coming back (chaos): try again
            why = f"{type(exc).__name__}: {exc}"
            if time.monotonic() - began <= timeout_s:
                say(out, f"settle: evidence unreadable ({why}); retrying")
                await asyncio.sleep(1.0)
                continue
            # Out of time: the run is still recorded, every check failing with the reason.
            evidence = Evidence(outcomes=outcomes, unreadable={"event-store": why})
        evidence.subscriptions = list(receivers.subscriptions)
        evidence.notifications = receivers.notifications(wall_start)
        results = [r.as_dict() for r in check_all(evidence)]
        failing = [r["key"] for r in results if not r["ok"]]
        if not failing or time.monotonic() - began > timeout_s:
            return evidence, results
        say(out, f"settle: waiting on {', '.join(failing)} ({time.monotonic() - began:.0f}s)")
        await asyncio.sleep(1.0)


async def execute(
    scenario: Scenario,
    *,
    api: PaymentsApi,
    inspector: Inspector,
    receivers: Receivers,
    run_dir: Path,
    api_url: str = "",
    out: TextIO | None = sys.stderr,
) -> dict[str, Any]:
    started_at = datetime.now(UTC)
    plan = schedule.build(scenario, new_run_id(started_at))
    runs.write_scenario(run_dir, scenario.raw)
    say(
        out,
        f"run {plan.run_id}: {scenario.name}, {plan.payments} payments in "
        f"{len(plan.sends)} sends over {scenario.duration:g}s -> {run_dir}",
    )

    await receivers.start()
    try:
        await _setup(api, plan, receivers, out)
        providers = sorted({step.provider for step in scenario.provider})
        knobs_before = {}
        for provider in providers:
            try:
                knobs_before[provider] = await asyncio.to_thread(inspector.knobs, provider)
            except Exception as exc:  # its steps will fail visibly in the timeline too
                receivers.notes.append(f"provider {provider} knobs unreadable, not restored: {exc}")

        runner = OpenModelRunner(
            plan.sends,
            api.post_payment,
            late_threshold_ms=scenario.late_threshold_ms,
            drop_after_s=scenario.drop_after_s,
            max_in_flight=scenario.max_in_flight,
            request_timeout_s=scenario.request_timeout_s,
            progress=out,
        )
        load = asyncio.create_task(runner.run())
        await asyncio.sleep(0)  # the runner fixes its start instant before its first await
        steps = timeline.steps_for(scenario, inspector.set_knobs, inspector.chaos)
        try:
            happenings = await timeline.play(steps, runner.now)
            await load
        finally:
            for provider, knobs in knobs_before.items():
                try:
                    await asyncio.to_thread(inspector.set_knobs, provider, knobs)
                except Exception as exc:  # reported; the run's record matters more
                    receivers.notes.append(f"provider {provider} knobs not restored: {exc}")

        outcomes = [o.as_dict() for o in runner.outcomes]
        accepted = {o["payment_id"] for o in outcomes if o.get("payment_id")}
        account_ids = [a.account_id for a in plan.accounts]
        drain = await _drain(inspector, account_ids, accepted, scenario.drain_timeout_s, out)
        evidence, checks = await _settle(
            inspector,
            api,
            receivers,
            runner.wall_start,
            account_ids,
            outcomes,
            scenario.settle_timeout_s,
            out,
        )
        await _unsubscribe(api, receivers, out)
        try:
            system_metrics = await asyncio.to_thread(
                inspector.system_metrics, runner.wall_start, time.time()
            )
        except Exception as exc:  # the metrics are a figure for the report, not a verdict
            system_metrics = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        await receivers.stop()

    figures = figures_mod.compute(
        outcomes,
        evidence.notifications,
        duration_s=scenario.duration,
        late_threshold_ms=scenario.late_threshold_ms,
        warmup_s=scenario.warmup,
    )
    slos = [
        s.as_dict() for s in slo.judge(scenario.slo, figures, drain["complete"], drain["pending"])
    ]
    record = {
        "run_id": plan.run_id,
        "scenario": scenario.name,
        "description": scenario.description,
        "started_at": started_at.isoformat(),
        "api_url": api_url,
        "accounts": [a.__dict__ for a in plan.accounts],
        "outcomes": outcomes,
        "subscriptions": receivers.subscriptions,
        "notifications": evidence.notifications,
        "notes": receivers.notes,
        "refused_notifications": receivers.refused()[:100],
        "timeline": [h.as_dict() for h in happenings],
        "drain": drain,
        "figures": figures,
        "system_metrics": system_metrics,
        "checks": checks,
        "slos": slos,
        "ok": all(c["ok"] for c in checks) and all(s["ok"] for s in slos),
    }
    save(run_dir, record, evidence)
    return record


def save(run_dir: Path, record: dict[str, Any], evidence: Evidence | None = None) -> None:
    runs.write_json(run_dir / runs.RUN_FILE, record)
    if evidence is not None:
        runs.write_json(run_dir / runs.EVIDENCE_FILE, evidence.as_dict())
    (run_dir / runs.REPORT_FILE).write_text(report_html.render(record))
