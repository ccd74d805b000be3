"""Lambda execution environments: a pool of worker processes per function.

Each worker is `python -m emulator.worker`, so a function shares no memory with the emulator and
is imported once per worker (a cold start), then reused warm. A pool never runs more workers than
the function's reserved concurrency (or EMULATOR_MAX_WORKERS); an invocation beyond that waits in
line for EMULATOR_QUEUE_TIMEOUT seconds and is then throttled, where Lambda would throttle at once.
A worker that overruns the function's Timeout is killed and the invocation answered as Lambda
answers it; a worker that dies is dropped and replaced by the next invocation that needs one.
Cold starts pass a gate shared by all functions (EMULATOR_CONCURRENT_INITS at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from consim.config import Settings

from emulator.intrinsics import ACCOUNT_ID
from emulator.logs import get_logger
from emulator.protocol import WorkerGone, encode, read_frame_async
from emulator.template import FunctionSpec
from emulator.worker import LAYERS_ENV, REQUEST_FD_ENV, RESPONSE_FD_ENV

log = get_logger("emulator.workers")

_PASSED_NAMES = {"TABLE_PREFIX", "XRAY_ENDPOINT", "PROVIDER_ADMIN_TOKEN"}
_PASSED_PREFIXES = ("AWS_", "CONSIM_")
_PROCESS_NAMES = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH"}
# Lambda gives an on-demand function's init phase 10 s; a laptop shared with Kafka, Postgres
# and a dozen cold starts at once needs more, so the limit is EMULATOR_INIT_TIMEOUT (30 s).
INIT_LIMIT_S = float(os.environ.get("EMULATOR_INIT_TIMEOUT", "30"))
INIT_GATE_POLL_S = 0.02


def concurrent_inits_from_env() -> int:
    """How many workers may be importing their function at once (EMULATOR_CONCURRENT_INITS)."""
    return max(1, int(os.environ.get("EMULATOR_CONCURRENT_INITS", "2")))


class Throttled(RuntimeError):
    """The function is at its concurrency cap and the invocation waited too long for a slot."""


@dataclass(frozen=True)
class InvocationResult:
    request_id: str
    ok: bool
    payload: Any  # the function's result, or Lambda's error object when not ok
    duration_ms: float
    cold_start: bool
    init_ms: float | None = None

    @property
    def error_type(self) -> str | None:
        return None if self.ok else str((self.payload or {}).get("errorType", "Unknown"))


def function_arn(spec: FunctionSpec, region: str) -> str:
    return f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{spec.function_name}"


def function_environment(
    spec: FunctionSpec, settings: Settings, parent: Mapping[str, str]
) -> dict[str, str]:
    """What a function's process sees: the emulator's pass-through variables, then the
    template's Environment, then the variables the Lambda runtime reserves for itself."""
    env = {
        key: value
        for key, value in parent.items()
        if key in _PROCESS_NAMES
        or key in _PASSED_NAMES
        or key.startswith(_PASSED_PREFIXES)
        or key.endswith("_TABLE")
    }
    # boto3 needs credentials; the local endpoints accept any.
    env.setdefault("AWS_ACCESS_KEY_ID", "test")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    env.update(spec.environment)
    today = datetime.now(UTC).strftime("%Y/%m/%d")
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{today}/[$LATEST]{uuid.uuid4().hex}",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "AWS_REGION": settings.aws_region,
            "AWS_DEFAULT_REGION": settings.aws_region,
            "AWS_XRAY_DAEMON_ADDRESS": settings.xray_daemon_address,
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "_HANDLER": spec.handler,
            "PYTHONUNBUFFERED": "1",
            LAYERS_ENV: os.pathsep.join(str(p) for p in spec.layer_dirs),
        }
    )
    return env


class Worker:
    """One worker process and the two ends of its private pipe."""

    def __init__(self, process: asyncio.subprocess.Process, reader, writer) -> None:
        self.process = process
        self.reader: asyncio.StreamReader = reader
        self.writer: asyncio.StreamWriter = writer
        self.init_ms: float | None = None
        self.init_error: dict[str, Any] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    @classmethod
    async def start(cls, env: Mapping[str, str], cwd: str) -> Worker:
        request_r, request_w = os.pipe()
        response_r, response_w = os.pipe()
        env = {**env, REQUEST_FD_ENV: str(request_r), RESPONSE_FD_ENV: str(response_w)}
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "emulator.worker",
                env=env,
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(request_r, response_w),
            )
        finally:
            os.close(request_r)
            os.close(response_w)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**26)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(response_r, "rb", 0)
        )
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(request_w, "wb", 0)
        )
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
        return cls(process, reader, writer)

    async def wait_ready(self) -> None:
        frame = await read_frame_async(self.reader)
        self.init_ms = float(frame["init_ms"])
        self.init_error = frame.get("init_error")

    async def call(self, message: dict[str, Any]) -> dict[str, Any]:
        try:
            self.writer.write(encode(message))
            await self.writer.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise WorkerGone("pipe closed") from exc
        return await read_frame_async(self.reader)

    def kill(self) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
        self.writer.close()

    async def stop(self) -> None:
        """Close the pipe (the worker's signal to exit) and reap it."""
        self.writer.close()
        try:
            await asyncio.wait_for(self.process.wait(), 2)
        except TimeoutError:
            self.kill()
            await self.process.wait()


class FunctionPool:
    def __init__(
        self,
        spec: FunctionSpec,
        settings: Settings,
        max_workers: int,
        queue_timeout_s: float,
        parent_env: Mapping[str, str] | None = None,
        init_gate: asyncio.Semaphore | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.arn = function_arn(spec, settings.aws_region)
        cap = spec.reserved_concurrency if spec.reserved_concurrency is not None else max_workers
        self.cap = max(0, cap)
        self.queue_timeout_s = queue_timeout_s
        self._env = function_environment(spec, settings, parent_env or os.environ)
        self._slots = asyncio.Semaphore(self.cap)
        self._init_gate = init_gate or asyncio.Semaphore(concurrent_inits_from_env())
        self._idle: list[Worker] = []
        self._workers: set[Worker] = set()
        self.running = 0
        self.peak_running = 0
        self.cold_starts = 0

    @property
    def worker_pids(self) -> list[int]:
        return sorted(w.pid for w in self._workers if w.alive)

    async def invoke(
        self, event: Any, trace_header: str | None = None, request_id: str | None = None
    ) -> InvocationResult:
        request_id = request_id or str(uuid.uuid4())
        if self.cap == 0:
            raise Throttled(f"{self.spec.function_name} has no reserved concurrency")
        try:
            await asyncio.wait_for(self._slots.acquire(), self.queue_timeout_s)
        except TimeoutError as exc:
            raise Throttled(f"{self.spec.function_name} is at its cap of {self.cap}") from exc
        self.running += 1
        self.peak_running = max(self.peak_running, self.running)
        try:
            return await self._invoke_in_slot(event, trace_header, request_id)
        finally:
            self.running -= 1
            self._slots.release()

    async def _invoke_in_slot(
        self, event: Any, trace_header: str | None, request_id: str
    ) -> InvocationResult:
        started = time.perf_counter()
        worker, failure, cold = await self._idle_or_new(request_id)
        if failure is not None:
            return self._result(request_id, False, failure, started, True)

        message = {
            "type": "invoke",
            "request_id": request_id,
            "event": event,
            "trace_header": trace_header,
            "deadline_ms": time.time() * 1000 + self.spec.timeout_s * 1000,
            "invoked_function_arn": self.arn,
        }
        try:
            frame = await asyncio.wait_for(worker.call(message), self.spec.timeout_s)
        except TimeoutError:
            self._discard(worker)
            log.warning(
                "invocation timed out, worker stopped",
                extra={"function": self.spec.function_name, "request_id": request_id},
            )
            error = _error(
                "Sandbox.Timedout",
                f"{_now()} {request_id} Task timed out after {self.spec.timeout_s:.2f} seconds",
            )
            return self._result(request_id, False, error, started, cold, worker.init_ms)
        except WorkerGone:
            # Reap before discarding: killing a worker that is already exiting would hide its
            # own exit status behind our SIGKILL.
            code = await _exit_code(worker)
            self._discard(worker)
            error = _error("Runtime.ExitError", f"RequestId: {request_id} Error: {code}")
            return self._result(request_id, False, error, started, cold, worker.init_ms)
        except asyncio.CancelledError:
            # The caller gave up mid-invocation; the worker's answer would reach the next
            # caller, so the worker goes.
            self._discard(worker)
            raise

        self._idle.append(worker)
        payload = frame["payload"] if frame["ok"] else frame["error"]
        return self._result(request_id, frame["ok"], payload, started, cold, worker.init_ms)

    def _result(self, request_id, ok, payload, started, cold, init_ms=None) -> InvocationResult:
        return InvocationResult(
            request_id=request_id,
            ok=ok,
            payload=payload,
            duration_ms=(time.perf_counter() - started) * 1000,
            cold_start=cold,
            init_ms=init_ms if cold else None,
        )

    async def _idle_or_new(self, request_id: str) -> tuple[Worker, dict[str, Any] | None, bool]:
        """A warm worker if one is (or becomes) idle, else a new one once the init gate lets it
        start. On two shared cores, a dozen imports at once all miss any init limit; with the
        gate, cold starts queue, and a worker that turns idle meanwhile serves the wait."""
        while True:
            worker = self._take_idle()
            if worker is not None:
                return worker, None, False
            if not self._init_gate.locked():
                async with self._init_gate:
                    return (*await self._start_worker(request_id), True)
            await asyncio.sleep(INIT_GATE_POLL_S)

    async def prewarm(self, count: int) -> int:
        """Start up to `count` workers ahead of any invocation, as provisioned concurrency does;
        returns how many are ready."""
        ready = 0
        for _ in range(min(count, self.cap) - len(self._workers)):
            async with self._init_gate:
                worker, failure = await self._start_worker("prewarm")
            if failure is not None:
                break
            self._idle.append(worker)
            ready += 1
        return ready

    def _take_idle(self) -> Worker | None:
        while self._idle:
            worker = self._idle.pop()
            if worker.alive:
                return worker
            self._workers.discard(worker)
        return None

    async def _start_worker(self, request_id: str) -> tuple[Worker, dict[str, Any] | None]:
        spawned = time.perf_counter()
        init_limit = max(INIT_LIMIT_S, self.spec.timeout_s)
        worker = await Worker.start(self._env, str(self.spec.code_dir))
        self._workers.add(worker)
        self.cold_starts += 1
        try:
            await asyncio.wait_for(worker.wait_ready(), init_limit)
        except TimeoutError:
            self._discard(worker)
            message = f"RequestId: {request_id} Error: init phase took over {init_limit:.0f} s"
            return worker, _error("Runtime.InitTimeout", message)
        except WorkerGone:
            code = await _exit_code(worker)
            self._discard(worker)
            return worker, _error("Runtime.ExitError", f"RequestId: {request_id} Error: {code}")
        # init_ms: the handler's import; ready_ms: from spawning the process until it is ready.
        log.info(
            "cold start",
            extra={
                "function": self.spec.function_name,
                "request_id": request_id,
                "pid": worker.pid,
                "init_ms": round(worker.init_ms or 0, 1),
                "ready_ms": round((time.perf_counter() - spawned) * 1000, 1),
                "init_error": (worker.init_error or {}).get("errorType"),
            },
        )
        if worker.init_error is not None:
            self._discard(worker)
            return worker, {**worker.init_error, "requestId": request_id}
        return worker, None

    def _discard(self, worker: Worker) -> None:
        worker.kill()
        self._workers.discard(worker)
        if worker in self._idle:
            self._idle.remove(worker)

    def kill_all(self) -> list[int]:
        """Kill every worker, busy or idle (a crash, as the chaos tests want it)."""
        pids = self.worker_pids
        for worker in list(self._workers):
            self._discard(worker)
        log.warning("workers killed", extra={"function": self.spec.function_name, "pids": pids})
        return pids

    async def close(self) -> None:
        workers, self._workers, self._idle = list(self._workers), set(), []
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)


def _error(error_type: str, message: str) -> dict[str, Any]:
    return {"errorType": error_type, "errorMessage": message}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _exit_code(worker: Worker) -> str:
    try:
        code = await asyncio.wait_for(worker.process.wait(), 2)
    except TimeoutError:
        return "Runtime exited without providing a reason"
    if code < 0:
        return f"Runtime exited with error: signal: {signal.Signals(-code).name.lower()[3:]}"
    return f"Runtime exited with error: exit status {code}"
