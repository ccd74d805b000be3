"""The Lambda service of the native stack: every function's pool, invoked by name, traced.

Triggers (the gateway, the Invoke API, Kafka mappings, schedules) all come through here, so
each invocation gets a trace header and an AWS::Lambda::Function segment the same way.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import Any

from consim.config import Settings

from emulator.logs import get_logger
from emulator.template import FunctionSpec, Template
from emulator.tracing import InvocationTrace, SegmentEmitter
from emulator.workers import (
    FunctionPool,
    InvocationResult,
    Throttled,
    concurrent_inits_from_env,
)

log = get_logger("emulator.runtime")

__all__ = ["FunctionNotFound", "InvocationResult", "Runtime", "Throttled"]


class FunctionNotFound(KeyError):
    """No function of the template has that logical id, FunctionName or ARN."""


def max_workers_from_env() -> int:
    return int(os.environ.get("EMULATOR_MAX_WORKERS", "4"))


def prewarm_from_env() -> int:
    return int(os.environ.get("EMULATOR_PREWARM", "0"))


def queue_timeout_from_env() -> float:
    return float(os.environ.get("EMULATOR_QUEUE_TIMEOUT", "10"))


class Runtime:
    def __init__(
        self,
        template: Template,
        settings: Settings,
        max_workers: int | None = None,
        queue_timeout_s: float | None = None,
        emitter: SegmentEmitter | None = None,
        parent_env: Mapping[str, str] | None = None,
    ) -> None:
        self.template = template
        self.settings = settings
        self.emitter = emitter
        workers = max_workers if max_workers is not None else max_workers_from_env()
        wait = queue_timeout_s if queue_timeout_s is not None else queue_timeout_from_env()
        # One gate for every function: cold starts compete for the same cores.
        init_gate = asyncio.Semaphore(concurrent_inits_from_env())
        self.pools = {
            logical_id: FunctionPool(spec, settings, workers, wait, parent_env, init_gate)
            for logical_id, spec in template.functions.items()
        }
        self._background: set[asyncio.Task] = set()

    def spec(self, name: str) -> FunctionSpec:
        try:
            return self.template.function(name)
        except KeyError as exc:
            raise FunctionNotFound(name) from exc

    def pool(self, name: str) -> FunctionPool:
        return self.pools[self.spec(name).logical_id]

    async def invoke(
        self, name: str, event: Any, trace_header: str | None = None
    ) -> InvocationResult:
        """Run one invocation and wait for it. Raises FunctionNotFound or Throttled."""
        pool = self.pool(name)
        trace = InvocationTrace.begin(trace_header)
        start = time.time()
        result = await pool.invoke(event, trace.header_for_function())
        end = time.time()
        fields = {
            "function": pool.spec.function_name,
            "request_id": result.request_id,
            "trace_id": trace.root,
            "duration_ms": round(result.duration_ms, 2),
            "cold_start": result.cold_start,
        }
        if result.ok:
            log.info("invocation", extra=fields)
        else:
            error = result.payload if isinstance(result.payload, dict) else {}
            fields.update(
                error_type=result.error_type,
                error_message=str(error.get("errorMessage", ""))[:500],
            )
            log.warning("invocation failed", extra=fields)
        if self.emitter is not None and trace.sampled:
            error = None if result.ok else result.payload
            self.emitter.emit(
                trace.segment(
                    pool.spec.function_name,
                    pool.arn,
                    result.request_id,
                    start,
                    end,
                    error,
                    result.cold_start,
                )
            )
        return result

    def invoke_event(self, name: str, event: Any, trace_header: str | None = None) -> None:
        """An asynchronous (Event) invocation: queued, answered at once, run in the background."""
        self.spec(name)  # an unknown function fails now, as the Invoke API reports it
        task = asyncio.create_task(self._invoke_later(name, event, trace_header))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _invoke_later(self, name: str, event: Any, trace_header: str | None) -> None:
        # Lambda retries a throttled asynchronous event for a while; a few tries stand in for it.
        for attempt in range(3):
            try:
                await self.invoke(name, event, trace_header)
                return
            except Throttled:
                await asyncio.sleep(1 + attempt)
        log.warning("asynchronous event dropped after throttling", extra={"function": name})

    async def prewarm(self, count: int) -> None:
        """Start `count` workers per function now (EMULATOR_PREWARM), so the first requests of a
        demo do not all wait for cold starts at once. Off by default, as in Lambda."""
        started = await asyncio.gather(*(pool.prewarm(count) for pool in self.pools.values()))
        log.info("workers prewarmed", extra={"workers": sum(started)})

    def kill(self, name: str) -> list[int]:
        return self.pool(name).kill_all()

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "logical_id": pool.spec.logical_id,
                "function_name": pool.spec.function_name,
                "cap": pool.cap,
                "running": pool.running,
                "peak_running": pool.peak_running,
                "cold_starts": pool.cold_starts,
                "worker_pids": pool.worker_pids,
            }
            for pool in self.pools.values()
        ]

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))
