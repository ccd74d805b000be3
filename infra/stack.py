"""The whole native stack: start it in order, stop it in reverse, say what runs where."""

from __future__ import annotations

import time

from consim.config import Settings

from infra import clients, console
from infra.broker import KafkaBroker
from infra.dynamodb import Dynalite
from infra.gateway import Emulator, emulator_present
from infra.layout import Layout
from infra.postgres import Postgres
from infra.service import Service, Status
from infra.xray import MotoServer


def infrastructure(config: Settings, layout: Layout) -> list[Service]:
    # Kafka first: its JVM takes longest to boot, and the others start while it does.
    return [
        KafkaBroker(config, layout),
        Postgres(config, layout),
        Dynalite(config, layout),
        MotoServer(config, layout),
    ]


def all_services(config: Settings, layout: Layout) -> list[Service]:
    return [*infrastructure(config, layout), Emulator(config, layout)]


def up(config: Settings) -> float:
    """Start what is not running, provision everything, return the seconds it took."""
    began = time.monotonic()
    layout = Layout(config.state_dir)
    layout.logs_dir.mkdir(parents=True, exist_ok=True)
    layout.run_dir.mkdir(parents=True, exist_ok=True)

    services = infrastructure(config, layout)
    for service in services:
        outcome = service.start()
        console.step(f"{service.name}: {outcome}")
    for service in services:
        service.settle()
    clients.ensure_local_client(config, layout)

    if emulator_present():
        emulator = Emulator(config, layout)
        console.step(f"emulator: {emulator.up()}")
    else:
        console.warn("emulator/__main__.py does not exist yet: the gateway is not started")
    return time.monotonic() - began


def down(config: Settings) -> list[str]:
    """Stop every service of this stack (data stays); return the names that were running."""
    layout = Layout(config.state_dir)
    stopped = []
    for service in reversed(all_services(config, layout)):
        if service.down():
            console.step(f"{service.name}: stopped")
            stopped.append(service.name)
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
