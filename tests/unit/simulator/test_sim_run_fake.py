"""A whole run (setup, load, timeline, drain, settle, record) against an in-process fake system:
an honest fake passes every invariant; each planted bug fails the invariant that guards it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from simulator import cli, runs
from simulator import scenario as sc
from simulator.api_client import PaymentsApi
from simulator.notifications import Receivers
from simulator.run import execute
from tests.unit.simulator.sim_fake_system import FakeInspector, FakeSystem

pytestmark = pytest.mark.unit


def small_scenario(**extra: Any) -> sc.Scenario:
    overrides = {
        "duration": 2,
        "arrival.rate": 15,
        "arrival.process": "uniform",
        "accounts.count": 3,
        "drain_timeout_s": 10,
        "settle_timeout_s": 3,
        "notifications.webpush": False,
        "slo.e2e_p99_ms": 10_000,
        "slo.api_p99_ms": 10_000,
        "slo.max_late_share": 1.0,
        "provider": [{"at": 0.5, "provider": "default", "knobs": {"failure_rate": 0.5}}],
        "chaos": [{"at": 1.0, "action": "kill-worker", "function": "ProcessorFunction"}],
        **extra,
    }
    return sc.load("demo", list(overrides.items()))


def run_against(system: FakeSystem, scenario: sc.Scenario, run_dir: Path) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        await system.start()
        try:
            async with PaymentsApi(system.url, "key") as api:
                return await execute(
                    scenario,
                    api=api,
                    inspector=FakeInspector(system),
                    receivers=Receivers(webhook=True, webpush=False),
                    run_dir=run_dir,
                    out=None,
                )
        finally:
            await system.stop()

    return asyncio.run(go())


def test_an_honest_system_passes_and_the_run_folder_is_complete(tmp_path: Path) -> None:
    system = FakeSystem()
    record = run_against(system, small_scenario(), tmp_path)

    failing = [c for c in record["checks"] if not c["ok"]] + [
        s for s in record["slos"] if not s["ok"]
    ]
    assert failing == []
    assert record["ok"] is True
    figures = record["figures"]
    assert figures["payments_accepted"] > 0
    assert figures["categories"]["error"] == 0
    assert figures["e2e_latency"]["webhook"]["count"] == figures["payments_accepted"]
    # The timeline ran: the knob change, then the kill, then the knobs were put back.
    assert system.knob_calls[0] == ("default", {"failure_rate": 0.5})
    assert system.knob_calls[-1] == ("default", {"failure_rate": 0.0})
    assert system.chaos.calls == [("kill-worker", "ProcessorFunction")]
    assert system.subscriptions == []  # deleted once the run no longer listens
    for name in (runs.RUN_FILE, runs.EVIDENCE_FILE, runs.REPORT_FILE, runs.SCENARIO_FILE):
        assert (tmp_path / name).exists()
    page = (tmp_path / runs.REPORT_FILE).read_text()
    assert page.count("<svg") == 4
    assert "PASSED" in page


@pytest.mark.parametrize(
    ("bug", "check"),
    [
        ("ignore-limit", "limits"),
        ("lose-notify", "notifications"),
        ("lose-publish", "kafka"),
        ("double-charge", "provider"),
    ],
)
def test_a_planted_bug_fails_its_invariant(tmp_path: Path, bug: str, check: str) -> None:
    extra: dict[str, Any] = {"settle_timeout_s": 0.5, "duration": 1.5}
    if bug == "ignore-limit":
        extra.update({"hot.share": 1.0, "hot.limit": 1000, "hot.balance": 0})
    record = run_against(FakeSystem(bug=bug), small_scenario(**extra), tmp_path)

    failed = {c["key"] for c in record["checks"] if not c["ok"]}
    assert check in failed
    assert record["ok"] is False


def test_a_notifier_that_sends_twice_fails_the_redelivery_slo(tmp_path: Path) -> None:
    scenario = small_scenario(settle_timeout_s=0.5, duration=1.5)
    record = run_against(FakeSystem(bug="double-notify"), scenario, tmp_path)

    failed_slos = {s["name"] for s in record["slos"] if not s["ok"]}
    assert record["figures"]["notifications_redelivered"] > 0
    assert "redelivered notifications" in failed_slos
    assert record["ok"] is False


def test_duplicates_share_one_payment_and_report_409s(tmp_path: Path) -> None:
    scenario = small_scenario(**{"duplicates.share": 1.0, "duplicates.concurrent_share": 0.5})
    record = run_against(FakeSystem(), scenario, tmp_path)

    categories = record["figures"]["categories"]
    idempotency = next(c for c in record["checks"] if c["key"] == "idempotency")
    assert categories["in-flight"] > 0
    assert categories["error"] == 0  # a replay with another body would be 422 key reuse
    assert idempotency["ok"]
    assert record["figures"]["payments_accepted"] == record["figures"]["payment_keys"]


def test_check_and_report_commands_work_on_a_saved_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONSIM_REPORTS_DIR", str(tmp_path))
    run_dir = runs.new_run_dir("demo")
    run_against(FakeSystem(), small_scenario(), run_dir)
    (run_dir / runs.REPORT_FILE).unlink()

    assert cli.main(["check", "--offline"]) == 0
    assert cli.main(["report", run_dir.name]) == 0
    assert (run_dir / runs.REPORT_FILE).exists()
    out = capsys.readouterr().out
    assert "RESULT: PASSED" in out

    # Tamper with the saved evidence: the offline check must now fail and say why.
    evidence = json.loads((run_dir / runs.EVIDENCE_FILE).read_text())
    evidence["kafka_event_ids"] = []
    (run_dir / runs.EVIDENCE_FILE).write_text(json.dumps(evidence))
    assert cli.main(["check", "--offline", str(run_dir)]) == 1
    kafka_line = next(
        line for line in capsys.readouterr().out.splitlines() if "published to Kafka" in line
    )
    assert "FAIL" in kafka_line


def test_cli_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "no-such-scenario"]) == 2
    assert "no scenario" in capsys.readouterr().err
    assert cli.main(["scenarios"]) == 0
    assert "demo" in capsys.readouterr().out


@pytest.mark.parametrize("command", [[], ["run"], ["scenarios"], ["check"], ["report"]])
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main([*command, "--help"])

    assert exit_.value.code == 0
    assert "usage: consim" in capsys.readouterr().out
