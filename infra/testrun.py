"""`python -m infra test`: the whole suite against a throwaway stack, always stopped after."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from consim.config import REPO_ROOT, settings

from infra import console, stack
from infra.environment import stack_env
from infra.layout import Layout
from infra.postgres import Postgres

TEST_PORT_OFFSET = "10000"
NO_TESTS_COLLECTED = 5
# Only what `up` makes is wiped, never the whole folder: CONSIM_STATE_DIR could be anything.
_STACK_ENTRIES = ("logs", "run", "postgres", "kafka", "dynalite", "api-key")
# What `env` exports (bar the offset), and the state dir: the test stack derives its own.
_STACK_VARIABLES = (
    "API_URL",
    "API_KEY",
    "KAFKA_BOOTSTRAP",
    "DATABASE_URL",
    "DYNAMODB_ENDPOINT",
    "XRAY_ENDPOINT",
    "AWS_XRAY_DAEMON_ADDRESS",
    "CONSIM_STATE_DIR",
)


def _wipe(layout: Layout, postgres_root: Path) -> None:
    for entry in _STACK_ENTRIES:
        path = layout.state_dir / entry
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    shutil.rmtree(postgres_root, ignore_errors=True)


def _pytest_argv(args: list[str]) -> list[str]:
    """Run tests/ unless the arguments already name what to run (a path or a node id)."""
    names_targets = any(not a.startswith("-") and Path(a.split("::")[0]).exists() for a in args)
    return [sys.executable, "-m", "pytest", *([] if names_targets else ["tests"]), *args]


def _stop_on_sigterm() -> None:
    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def _isolate_environment() -> None:
    """Point every setting at the test stack, whatever the shell exported for another stack.

    After `eval "$(make -s env)"` the shell holds the developer's endpoints; left in place they
    would win over the offset, and the tests would run against (and wipe) that stack.
    """
    for name in _STACK_VARIABLES:
        os.environ.pop(name, None)
    if os.environ.get("CONSIM_PORT_OFFSET", "0") == "0":
        os.environ["CONSIM_PORT_OFFSET"] = TEST_PORT_OFFSET


def run(args: list[str]) -> int:
    _isolate_environment()
    config = settings()
    layout = Layout(config.state_dir)
    _stop_on_sigterm()
    console.step(f"test stack: port offset {os.environ['CONSIM_PORT_OFFSET']}, {config.state_dir}")

    # A run that was killed hard may have left its services behind; they hold the ports.
    stack.down(config)
    _wipe(layout, Postgres(config, layout).root)
    try:
        startup = stack.up(config)
        console.step(f"stack started in {startup:.1f}s")
        env = {**os.environ, **stack_env(config, layout)}
        began = time.monotonic()
        code = subprocess.call(_pytest_argv(args), cwd=REPO_ROOT, env=env)
        console.step(f"tests took {time.monotonic() - began:.1f}s (stack start {startup:.1f}s)")
        if code == NO_TESTS_COLLECTED:
            console.fail("pytest collected no tests (exit 5): a test run that tests nothing fails")
        return code
    except KeyboardInterrupt:
        console.fail("interrupted")
        return 130
    finally:
        console.step("stopping the test stack")
        stack.down(config)
