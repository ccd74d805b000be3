"""Is a port free, does it answer: the checks made before starting a service and while waiting."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from infra.errors import PortTakenError


def answers(host: str, port: int, timeout: float = 0.3) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_free(service: str, host: str, port: int, proto: str = "tcp") -> None:
    """Raise PortTakenError unless this process could bind host:port itself.

    SO_REUSEADDR keeps a port in TIME_WAIT (a service we just stopped) from counting as taken,
    while a listening socket, or one bound without that flag, still does.
    """
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise PortTakenError(service, host, port, proto) from error


_abandoned = threading.Event()


def abandon_waits() -> None:
    """Make every wait_until, in any thread, give up now (the person pressed Ctrl-C)."""
    _abandoned.set()


def wait_until(ready: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll ready() until it is true or timeout seconds have passed; return its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return True
        if time.monotonic() >= deadline or _abandoned.wait(interval):
            return False
