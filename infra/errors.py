"""What can go wrong while running the native stack, as types the CLI turns into one clear line."""

from __future__ import annotations


class StackError(Exception):
    """A failure the person at the terminal can act on; the message says what to do."""


class PortTakenError(StackError):
    def __init__(self, service: str, host: str, port: int, proto: str = "tcp") -> None:
        self.service, self.host, self.port, self.proto = service, host, port, proto
        super().__init__(
            f"{proto.upper()} port {port} on {host}, wanted by {service}, is already taken by a "
            f"process this stack did not start. Stop that process, or move this stack with "
            f"CONSIM_PORT_OFFSET (or the service's own port variable)."
        )


class NotReadyError(StackError):
    def __init__(self, service: str, seconds: float, log_file: object, log_tail: str = "") -> None:
        self.service, self.seconds = service, seconds
        message = f"{service} did not become ready within {seconds:.0f}s; see its log {log_file}"
        if log_tail:
            message += "\n--- last lines of the log ---\n" + log_tail
        super().__init__(message)


class InstallError(StackError):
    """A tool the stack needs (Java, Maven, Node, PostgreSQL) is missing or failed to install."""
