"""Where one stack keeps its things: data, logs and pid files under the state dir (git-ignored)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from consim.config import REPO_ROOT

INFRA_DIR = REPO_ROOT / "infra"
# Shared by every stack on the machine: what depends only on the repo and ~/.m2 (the classpath).
CACHE_DIR = REPO_ROOT / ".local" / "cache"


@dataclass(frozen=True)
class Layout:
    state_dir: Path

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def api_key_file(self) -> Path:
        return self.state_dir / "api-key"

    def log(self, service: str) -> Path:
        return self.logs_dir / f"{service}.log"

    def pid_file(self, service: str) -> Path:
        return self.run_dir / f"{service}.pid"

    def data(self, service: str) -> Path:
        return self.state_dir / service


def host_port(address: str) -> tuple[str, int]:
    """("127.0.0.1", 9092) from "127.0.0.1:9092" or "http://127.0.0.1:9092"."""
    if "://" not in address:
        address = f"tcp://{address}"
    parts = urlsplit(address)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"no host:port in {address!r}")
    return parts.hostname, parts.port
