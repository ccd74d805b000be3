"""What happens to the world during a run: provider knob changes and chaos steps, on schedule.

The steps run beside the load on the same clock (offsets from the run's start). Each blocking
action runs in a thread, so stopping Kafka for ten seconds never holds up a payment send.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from consim.config import Settings

from simulator.scenario import ChaosStep, ProviderStep, Scenario

log = logging.getLogger("consim.simulator")


@dataclass
class Happening:
    at: float  # intended offset
    label: str
    started: float | None = None
    finished: float | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Step:
    at: float
    label: str
    action: Callable[[], None]  # blocking; run in a thread


class Chaos:
    """The infrastructure levers of the native stack (infra package, emulator's hook)."""

    def __init__(self, config: Settings, kill_workers: Callable[[str], None]) -> None:
        self._config = config
        self._kill_workers = kill_workers

    def _service(self, kind: str):
        from infra.broker import KafkaBroker
        from infra.layout import Layout
        from infra.postgres import Postgres

        layout = Layout(self._config.state_dir)
        return {"kafka": KafkaBroker, "postgres": Postgres}[kind](self._config, layout)

    def stop_kafka(self, seconds: float) -> None:
        broker = self._service("kafka")
        broker.down()
        time.sleep(seconds)
        broker.start()
        broker.settle()

    def restart_postgres(self) -> None:
        postgres = self._service("postgres")
        postgres.down()
        postgres.start()
        postgres.settle()

    def kill_worker(self, function: str) -> None:
        self._kill_workers(function)


def steps_for(
    scenario: Scenario,
    set_knobs: Callable[[str, dict[str, Any]], Any],
    chaos: Chaos,
) -> list[Step]:
    steps: list[Step] = []
    for p in scenario.provider:
        steps.append(_provider_step(p, set_knobs))
    for c in scenario.chaos:
        steps.append(_chaos_step(c, chaos))
    return sorted(steps, key=lambda s: s.at)


def _provider_step(step: ProviderStep, set_knobs: Callable[[str, dict[str, Any]], Any]) -> Step:
    knobs = ", ".join(f"{k}={v}" for k, v in step.knobs.items())
    return Step(
        step.at, f"provider {step.provider}: {knobs}", lambda: set_knobs(step.provider, step.knobs)
    )


def _chaos_step(step: ChaosStep, chaos: Chaos) -> Step:
    if step.action == "stop-kafka":
        return Step(
            step.at,
            f"Kafka stopped for {step.duration:g}s",
            lambda: chaos.stop_kafka(step.duration),
        )
    if step.action == "restart-postgres":
        return Step(step.at, "Postgres restarted", chaos.restart_postgres)
    return Step(
        step.at, f"{step.function} workers killed", lambda: chaos.kill_worker(step.function or "")
    )


async def play(steps: list[Step], now: Callable[[], float]) -> list[Happening]:
    """Run each step at its offset (``now`` reads the run's clock); return what happened."""
    happenings: list[Happening] = []
    running: list[asyncio.Task[None]] = []

    async def run(step: Step, happening: Happening) -> None:
        happening.started = now()
        try:
            await asyncio.to_thread(step.action)
        except Exception as exc:  # a failed lever is reported in the run, not fatal to it
            happening.error = f"{type(exc).__name__}: {exc}"
            log.warning("timeline step %r failed: %s", step.label, exc)
        happening.finished = now()

    for step in steps:
        delay = step.at - now()
        if delay > 0:
            await asyncio.sleep(delay)
        happening = Happening(at=step.at, label=step.label)
        happenings.append(happening)
        running.append(asyncio.create_task(run(step, happening)))
    if running:
        await asyncio.gather(*running)
    return happenings
