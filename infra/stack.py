"""The whole native stack: start it in order, stop it in reverse, say what runs where."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

from consim.config import Settings

from infra import clients, console, ports
from infra.broker import KafkaBroker
from infra.dynamodb import Dynalite
from infra.gateway import Emulator, emulator_present
from infra.layout import Layout
from infra.postgres import Postgres
from infra.service import Service, Status
from infra.xray import MotoServer


def infrastructure(config: Settings, layout: Layout) -> list[Service]:
    return [
        KafkaBroker(config, layout),
        Postgres(config, layout),
        Dynalite(config, layout),
        MotoServer(config, layout),
    ]


def all_services(config: Settings, layout: Layout) -> list[Service]:
    return [*infrastructure(config, layout), Emulator(config, layout)]


def _each_at_once(services: list[Service], action: Callable[[Service], object]) -> None:
    """Run action on every service in parallel; raise the first failure after all have finished.

    The services do not depend on each other, and most of their start is waiting (a JVM
    booting, initdb, npm), so together they take as long as the slowest one, Kafka.
    On Ctrl-C (or SIGTERM) the readiness waits are cut short and every thread is let finish
    before the interrupt goes on, so nothing is launched after the caller's `down`.
    """
    pool = ThreadPoolExecutor(max_workers=len(services))
    try:
        futures = [pool.submit(action, service) for service in services]
        wait(futures)
    except BaseException:
        ports.abandon_waits()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    errors = [f.exception() for f in futures if f.exception() is not None]
    for error in errors[1:]:
        console.fail(str(error))
    if errors:
        raise errors[0]


def up(config: Settings) -> float:
    """Start what is not running, provision everything, return the seconds it took."""
    began = time.monotonic()
    layout = Layout(config.state_dir)
    layout.logs_dir.mkdir(parents=True, exist_ok=True)
    layout.run_dir.mkdir(parents=True, exist_ok=True)

    def bring_up(service: Service) -> None:
        console.step(f"{service.name}: {service.up()}")

    _each_at_once(infrastructure(config, layout), bring_up)
    clients.ensure_local_client(config, layout)

    # Last: the functions connect to everything above as they start.
    if emulator_present():
        bring_up(Emulator(config, layout))
    else:
        console.warn("emulator/__main__.py does not exist yet: the gateway is not started")
    return time.monotonic() - began


def down(config: Settings) -> list[str]:
    """Stop every service of this stack (data stays); return the names that were running."""
    layout = Layout(config.state_dir)
    stopped: list[str] = []

    def take_down(service: Service) -> None:
        if service.down():
            console.step(f"{service.name}: stopped")
            stopped.append(service.name)

    # The emulator first, so that its functions do not fill its log with connection errors.
    take_down(Emulator(config, layout))
    _each_at_once(infrastructure(config, layout), take_down)
    return stopped


def status(config: Settings) -> list[Status]:
    layout = Layout(config.state_dir)
    return [service.status() for service in all_services(config, layout)]


def format_status(statuses: list[Status]) -> str:
    rows = [("service", "state", "pid", "port", "endpoint")]
    for s in statuses:
        state = "running" if s.running else "stopped"
        rows.append((s.name, state, str(s.pid or "-"), str(s.port), s.endpoint))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
        + "  "
        + row[4]
        + "\n"
        for row in rows
    )
