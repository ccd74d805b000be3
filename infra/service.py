"""What every service of the stack does on `up`, `down` and `status`, whatever it runs."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from consim.config import Settings

from infra import console, ports, processes
from infra.errors import NotReadyError
from infra.layout import Layout


@dataclass(frozen=True)
class Port:
    host: str
    number: int
    proto: str = "tcp"


@dataclass(frozen=True)
class Status:
    name: str
    running: bool
    pid: int | None
    port: int
    endpoint: str


class Service(ABC):
    """One process of the stack. Subclasses say how to install, launch and provision it."""

    name: str = ""
    start_timeout: float = 60.0
    stop_timeout: float = 20.0

    def __init__(self, config: Settings, layout: Layout) -> None:
        self.config = config
        self.layout = layout

    # --- what a subclass describes ---------------------------------------------------------
    @property
    @abstractmethod
    def port(self) -> Port: ...

    @property
    @abstractmethod
    def endpoint(self) -> str: ...

    @property
    def extra_ports(self) -> list[Port]:
        return []

    @property
    def log_file(self) -> Path:
        return self.layout.log(self.name)

    @property
    def pid_file(self) -> Path:
        return self.layout.pid_file(self.name)

    def marker(self) -> str:
        """A piece of this service's command line that tells our process from a recycled pid."""
        return str(self.port.number)

    def install(self) -> None:
        """Fetch or build what launch() needs; quick when it is already there."""
        return None

    @abstractmethod
    def launch(self) -> None:
        """Start the process in the background (it must record its pid)."""

    def ready(self) -> bool:
        return ports.answers(self.port.host, self.port.number)

    def provision(self) -> None:
        """Create what the stack declares (tables, topics, schema) if missing."""
        return None

    # --- the shared life cycle --------------------------------------------------------------
    def pid(self) -> int | None:
        pid = processes.read_pid(self.pid_file)
        return pid if pid is not None and processes.is_alive(pid, self.marker()) else None

    def up(self) -> str:
        """Make the service run and be provisioned; say whether it was started or reused."""
        outcome = self.start()
        self.settle()
        return outcome

    def start(self) -> str:
        """Install and launch unless already running; do not wait (others can start meanwhile)."""
        self.install()
        if self.pid() is not None:
            return "reused"
        self.pid_file.unlink(missing_ok=True)
        for port in [self.port, *self.extra_ports]:
            ports.ensure_free(self.name, port.host, port.number, port.proto)
        self.launch()
        return "started"

    def settle(self) -> None:
        """Wait until the service answers, then create what it should hold."""
        self._wait_ready()
        self.provision()

    def down(self) -> bool:
        """Stop the service if it runs; True if it did."""
        pid = self.pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        self.stopped(cleanly=processes.stop(pid, self.stop_timeout))
        return True

    def stopped(self, cleanly: bool) -> None:
        """Tidy up after the process has gone (cleanly: it exited on SIGTERM, not SIGKILL)."""
        return None

    def status(self) -> Status:
        pid = self.pid()
        return Status(self.name, pid is not None, pid, self.port.number, self.endpoint)

    def _wait_ready(self) -> None:
        started = time.monotonic()

        def ready_or_gone() -> bool:
            return self.pid() is None or self.ready()

        finished = ports.wait_until(ready_or_gone, self.start_timeout)
        if not finished or self.pid() is None:
            tail = processes.tail(self.log_file)
            raise NotReadyError(self.name, time.monotonic() - started, self.log_file, tail)
        console.step(f"{self.name} ready on {self.endpoint}")
