"""Schedule events: each fires its function on its rate with EventBridge's scheduled-event shape.

Like EventBridge, a tick does not wait for the previous invocation; the function's concurrency
cap decides whether ticks overlap. cron() expressions are not fired locally (logged at start).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from emulator.intrinsics import ACCOUNT_ID
from emulator.logs import get_logger
from emulator.runtime import Runtime, Throttled
from emulator.template import ScheduleEvent

log = get_logger("emulator.schedules")


def scheduled_event(rule_name: str, region: str, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{ACCOUNT_ID}:rule/{rule_name}"],
        "detail": {},
    }


class Scheduler:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.fired = 0
        self._tasks: list[asyncio.Task] = []
        self._invocations: set[asyncio.Task] = set()

    def start(self) -> Scheduler:
        for spec in self.runtime.template.functions.values():
            for schedule in spec.schedule_events:
                if not schedule.enabled:
                    continue
                if schedule.interval_s is None:
                    log.warning(
                        "schedule not fired locally",
                        extra={"function": spec.logical_id, "expression": schedule.expression},
                    )
                    continue
                self._tasks.append(asyncio.create_task(self._tick(spec.logical_id, schedule)))
        return self

    async def _tick(self, function: str, schedule: ScheduleEvent) -> None:
        rule = f"{function}-{schedule.name}"
        region = self.runtime.settings.aws_region
        while True:
            await asyncio.sleep(schedule.interval_s or 60)
            event = json.loads(schedule.input) if schedule.input else scheduled_event(rule, region)
            task = asyncio.create_task(self._fire(function, event))
            self._invocations.add(task)
            task.add_done_callback(self._invocations.discard)

    async def _fire(self, function: str, event: dict[str, Any]) -> None:
        self.fired += 1
        try:
            await self.runtime.invoke(function, event)
        except Throttled:
            log.warning("scheduled invocation throttled", extra={"function": function})

    async def stop(self) -> None:
        tasks = self._tasks + list(self._invocations)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
