"""Worker pools behave like Lambda execution environments (contract tests with the fixture
functions, run in real worker processes)."""

import asyncio
import json
import os
from pathlib import Path

import pytest
from consim.config import REPO_ROOT, settings

from emulator.template import load_template
from emulator.workers import FunctionPool, Throttled

pytestmark = pytest.mark.unit

FIXTURE = REPO_ROOT / "tests/fixtures/emulator/template.yaml"


@pytest.fixture
def record_dir(tmp_path: Path) -> Path:
    return tmp_path / "records"


@pytest.fixture
def template(record_dir):
    return load_template(FIXTURE, {"RecordDir": str(record_dir)})


def _pool(template, name, max_workers=4, queue_timeout_s=10.0, env=None):
    return FunctionPool(template.function(name), settings(), max_workers, queue_timeout_s, env)


def _records(record_dir: Path, kind: str) -> list[dict]:
    path = record_dir / f"{kind}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def _run(pool, coroutine):
    try:
        return await coroutine
    finally:
        await pool.close()


def test_cold_then_warm_in_a_separate_process_with_lambdas_context_and_environment(template):
    parent_env = {**os.environ, "CLIENTS_TABLE": "t-clients", "SECRET_OF_THE_EMULATOR": "x"}
    pool = _pool(template, "EchoFunction", env=parent_env)

    async def scenario():
        first = await pool.invoke(
            {"n": 1}, "Root=1-5f000000-aaaaaaaaaaaaaaaaaaaaaaaa;Parent=1a;Sampled=1"
        )
        second = await pool.invoke({"n": 2})
        return first, second

    first, second = asyncio.run(_run(pool, scenario()))

    assert first.ok and first.cold_start and first.init_ms is not None
    assert second.ok and not second.cold_start
    assert first.payload["pid"] == second.payload["pid"] != os.getpid()
    assert first.payload["event"] == {"n": 1}
    context = first.payload["context"]
    assert context["aws_request_id"] == first.request_id
    assert context["function_name"] == "echo-test"
    assert context["memory_limit_in_mb"] == "256"
    assert context["invoked_function_arn"].endswith(":function:echo-test")
    assert context["log_group_name"] == "/aws/lambda/echo-test"
    assert 0 < context["remaining_ms"] <= 5000
    env = first.payload["env"]
    assert env["_HANDLER"] == "echo.handler"
    assert env["LAMBDA_TASK_ROOT"] == str(FIXTURE.parent / "functions")
    assert env["_X_AMZN_TRACE_ID"].startswith("Root=1-5f000000-")
    assert env["GREETING"] == "hello from test in us-east-1"
    assert env["CLIENTS_TABLE"] == "t-clients"
    assert "SECRET_OF_THE_EMULATOR" not in env


def test_function_error_has_lambdas_error_shape(template):
    pool = _pool(template, "FailFunction")
    result = asyncio.run(_run(pool, pool.invoke({})))

    assert not result.ok
    assert result.payload["errorType"] == "PaymentBroken"
    assert result.payload["errorMessage"] == "the test function failed on purpose"
    assert any("fail.py" in frame for frame in result.payload["stackTrace"])
    assert not any("emulator/worker.py" in frame for frame in result.payload["stackTrace"])


def test_import_error_is_reported_like_lambda(template):
    pool = _pool(template, "BrokenImportFunction")
    result = asyncio.run(_run(pool, pool.invoke({})))
    assert result.payload["errorType"] == "Runtime.ImportModuleError"


def test_timeout_is_answered_like_lambda_and_the_worker_replaced(template):
    pool = _pool(template, "SlowFunction")

    async def scenario():
        timed_out = await pool.invoke({"sleep_s": 5})
        pids_after_timeout = pool.worker_pids
        after = await pool.invoke({"sleep_s": 0})
        return timed_out, pids_after_timeout, after

    timed_out, pids_after_timeout, after = asyncio.run(_run(pool, scenario()))

    assert not timed_out.ok
    assert timed_out.payload["errorType"] == "Sandbox.Timedout"
    assert timed_out.payload["errorMessage"].endswith("Task timed out after 2.00 seconds")
    assert pids_after_timeout == []  # the worker that overran was stopped
    assert after.ok and after.cold_start  # and a new one serves the next invocation


def test_a_crashed_worker_is_replaced(template):
    pool = _pool(template, "ExitFunction")

    async def scenario():
        return await pool.invoke({}), await pool.invoke({})

    first, second = asyncio.run(_run(pool, scenario()))
    assert first.payload["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in first.payload["errorMessage"]
    assert second.cold_start and second.payload["errorType"] == "Runtime.ExitError"


def test_reserved_concurrency_caps_the_workers(template, record_dir):
    pool = _pool(template, "SlowFunction")  # ReservedConcurrentExecutions: 2
    calls = 5

    async def scenario():
        # Both workers warm first, so that a slow cold start cannot hide the overlap.
        await pool.prewarm(2)
        return await asyncio.gather(*(pool.invoke({"sleep_s": 1.0}) for _ in range(calls)))

    results = asyncio.run(_run(pool, scenario()))

    assert all(r.ok for r in results)
    runs = _records(record_dir, "slow")
    assert len(runs) == calls
    assert len({r["pid"] for r in runs}) == 2
    # At any run's start, how many runs were in progress (its own included)?
    overlaps = [sum(1 for o in runs if o["start"] <= r["start"] < o["end"]) for r in runs]
    assert max(overlaps) == 2
    assert pool.peak_running == 2


def test_beyond_the_cap_an_invocation_waits_then_is_throttled(template):
    pool = _pool(template, "SlowFunction", queue_timeout_s=0.2)

    async def scenario():
        busy = [asyncio.create_task(pool.invoke({"sleep_s": 1.5})) for _ in range(2)]
        await asyncio.sleep(0.1)
        with pytest.raises(Throttled):
            await pool.invoke({"sleep_s": 0})
        return await asyncio.gather(*busy)

    assert all(r.ok for r in asyncio.run(_run(pool, scenario())))


def test_kill_all_crashes_busy_workers_and_new_ones_take_over(template):
    pool = _pool(template, "SlowFunction")

    async def scenario():
        await pool.prewarm(1)
        busy = asyncio.create_task(pool.invoke({"sleep_s": 1.5}))
        await asyncio.sleep(0.5)
        killed = pool.kill_all()
        crashed = await busy
        after = await pool.invoke({"sleep_s": 0})
        return killed, crashed, after

    killed, crashed, after = asyncio.run(_run(pool, scenario()))
    assert len(killed) == 1
    assert crashed.payload["errorType"] == "Runtime.ExitError"
    assert "signal: kill" in crashed.payload["errorMessage"]
    assert after.ok and after.cold_start and after.payload["body"] != str(killed[0])


def test_prewarmed_workers_serve_the_first_invocation_warm(template):
    pool = _pool(template, "SlowFunction")  # cap 2

    async def scenario():
        ready = await pool.prewarm(3)
        return ready, await pool.invoke({"sleep_s": 0})

    ready, first = asyncio.run(_run(pool, scenario()))
    assert ready == 2
    assert first.ok and not first.cold_start
