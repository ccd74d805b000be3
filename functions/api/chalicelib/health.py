"""GET /health: does each dependency answer right now?"""

from __future__ import annotations

import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from consim.adapters import dynamodb
from consim.config import settings
from consim.services import bootstrap

TIMEOUT = 2.0


def _postgres() -> None:
    with bootstrap.event_store().pool.connection(timeout=TIMEOUT) as conn:
        conn.execute("SELECT 1")


def _dynamodb() -> None:
    dynamodb.client().describe_table(TableName=settings().table("clients"))


def _kafka() -> None:
    # A TCP answer from a bootstrap broker: producing a probe record would put noise on the topic.
    errors = []
    for server in settings().kafka_bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=TIMEOUT).close()
            return
        except OSError as error:
            errors.append(f"{server}: {error}")
    raise ConnectionError("; ".join(errors))


CHECKS: dict[str, Callable[[], None]] = {
    "postgres": _postgres,
    "dynamodb": _dynamodb,
    "kafka": _kafka,
}


def _run(check: Callable[[], None]) -> str | None:
    try:
        check()
    except Exception as error:
        return f"{type(error).__name__}: {error}"[:300]
    return None


def check_all() -> dict[str, str | None]:
    """Each dependency -> None when it answered, else why not. Checks run in parallel."""
    with ThreadPoolExecutor(max_workers=len(CHECKS)) as pool:
        futures = {name: pool.submit(_run, check) for name, check in CHECKS.items()}
        return {name: future.result() for name, future in futures.items()}
