"""Every endpoint, port, name and knob of the system, read from the environment in one place.

The defaults run the native local stack; in AWS or LocalStack the template sets the variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]

# kafka-python lets the pause between reconnects to a broker grow to 30 s, so a client that lived
# through a broker outage stayed cut off up to 30 s after the broker was back (measured in the
# broker-outage scenario: the processor's consumer fetched 31 s late). 1 s is the Java client's
# ceiling; every producer and consumer of the project uses it.
KAFKA_RECONNECT_BACKOFF_MAX_MS = 1_000


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def _env_float(name: str, default: float) -> float:
    return float(_env(name, str(default)))


def port_offset() -> int:
    """Shifts every default port, so that several stacks (a developer's, the tests') can coexist."""
    return _env_int("CONSIM_PORT_OFFSET", 0)


def _port(name: str, base: int) -> int:
    return _env_int(name, base + port_offset())


def _default_state_dir() -> str:
    offset = port_offset()
    root = REPO_ROOT / ".local"
    return str(root if offset == 0 else root / f"stack-{offset}")


@dataclass(frozen=True)
class Settings:
    # Where the native stack keeps its data, logs and generated secrets (git-ignored).
    state_dir: Path = field(
        default_factory=lambda: Path(_env("CONSIM_STATE_DIR", _default_state_dir()))
    )

    gateway_host: str = field(default_factory=lambda: _env("GATEWAY_HOST", "127.0.0.1"))
    gateway_port: int = field(default_factory=lambda: _port("GATEWAY_PORT", 3000))

    kafka_bootstrap: str = field(
        default_factory=lambda: _env("KAFKA_BOOTSTRAP", f"127.0.0.1:{_port('KAFKA_PORT', 9092)}")
    )
    kafka_controller_port: int = field(default_factory=lambda: _port("KAFKA_CONTROLLER_PORT", 9093))
    payment_events_topic: str = field(
        default_factory=lambda: _env("PAYMENT_EVENTS_TOPIC", "payment-events")
    )
    # The publish right after a commit (the outbox fast path) gives up after this long and
    # leaves the events to the relay, so a broker outage costs a request at most this much;
    # the relay's own publishes wait KAFKA_PUBLISH_TIMEOUT_S.
    kafka_fast_path_timeout_s: float = field(
        default_factory=lambda: _env_float("KAFKA_FAST_PATH_TIMEOUT_S", 1.0)
    )
    kafka_publish_timeout_s: float = field(
        default_factory=lambda: _env_float("KAFKA_PUBLISH_TIMEOUT_S", 5.0)
    )
    dead_letter_topic: str = field(
        default_factory=lambda: _env("DEAD_LETTER_TOPIC", "payment-events-dlq")
    )

    postgres_host: str = field(default_factory=lambda: _env("POSTGRES_HOST", "127.0.0.1"))
    postgres_port: int = field(default_factory=lambda: _port("POSTGRES_PORT", 5432))
    database_url: str = field(
        default_factory=lambda: _env(
            "DATABASE_URL",
            "postgresql://consim:consim@{}:{}/consim".format(
                _env("POSTGRES_HOST", "127.0.0.1"), _port("POSTGRES_PORT", 5432)
            ),
        )
    )

    dynamodb_endpoint: str = field(
        default_factory=lambda: _env(
            "DYNAMODB_ENDPOINT", f"http://127.0.0.1:{_port('DYNAMODB_PORT', 8000)}"
        )
    )
    xray_endpoint: str = field(
        default_factory=lambda: _env(
            "XRAY_ENDPOINT", f"http://127.0.0.1:{_port('MOTO_PORT', 5000)}"
        )
    )
    xray_daemon_address: str = field(
        default_factory=lambda: _env(
            "AWS_XRAY_DAEMON_ADDRESS", f"127.0.0.1:{_port('XRAY_DAEMON_PORT', 2000)}"
        )
    )
    aws_region: str = field(
        default_factory=lambda: _env("AWS_REGION", _env("AWS_DEFAULT_REGION", "us-east-1"))
    )

    provider_url: str = field(
        default_factory=lambda: _env(
            "PROVIDER_URL", f"http://127.0.0.1:{_port('GATEWAY_PORT', 3000)}/providers"
        )
    )
    provider_admin_token: str = field(
        default_factory=lambda: _env("PROVIDER_ADMIN_TOKEN", "consim-local")
    )
    # How the processor talks to the provider: per-request timeout, attempts per instance
    # (with exponential backoff from provider_backoff_ms), how long a health answer is trusted,
    # and the typical response time above which the default counts as slow.
    provider_timeout_ms: int = field(default_factory=lambda: _env_int("PROVIDER_TIMEOUT_MS", 1000))
    provider_attempts: int = field(default_factory=lambda: _env_int("PROVIDER_ATTEMPTS", 3))
    provider_backoff_ms: int = field(default_factory=lambda: _env_int("PROVIDER_BACKOFF_MS", 50))
    provider_health_ttl_ms: int = field(
        default_factory=lambda: _env_int("PROVIDER_HEALTH_TTL_MS", 5000)
    )
    provider_slow_ms: int = field(default_factory=lambda: _env_int("PROVIDER_SLOW_MS", 500))
    # The relay's sweeper of payments left pending (consim.services.redrive): a payment still
    # only requested after pending_redrive_after_s is published again to the processor, at most
    # once per pending_redrive_interval_s, at most pending_redrive_batch per tick.
    pending_redrive_after_s: float = field(
        default_factory=lambda: _env_float("PENDING_REDRIVE_AFTER_S", 30.0)
    )
    pending_redrive_interval_s: float = field(
        default_factory=lambda: _env_float("PENDING_REDRIVE_INTERVAL_S", 60.0)
    )
    pending_redrive_batch: int = field(
        default_factory=lambda: _env_int("PENDING_REDRIVE_BATCH", 100)
    )

    table_prefix: str = field(default_factory=lambda: _env("TABLE_PREFIX", "consim-"))

    # Notifications. The VAPID key is a PEM or a base64url raw P-256 key; when unset the stack
    # generates one once and keeps it in the state dir (AWS must set it: Lambda has no such dir).
    vapid_private_key: str = field(default_factory=lambda: _env("VAPID_PRIVATE_KEY", ""))
    vapid_subject: str = field(
        default_factory=lambda: _env("VAPID_SUBJECT", "mailto:notifications@consim.example")
    )
    # Native stack only: lets push endpoints and webhooks be plain http on the loopback interface.
    allow_loopback_push: bool = field(
        default_factory=lambda: _env("CONSIM_ALLOW_LOOPBACK_PUSH", "0") == "1"
    )
    push_ttl_seconds: int = field(default_factory=lambda: _env_int("PUSH_TTL_SECONDS", 3600))
    notify_timeout_seconds: float = field(
        default_factory=lambda: _env_float("NOTIFY_TIMEOUT_SECONDS", 2.0)
    )
    notify_max_attempts: int = field(default_factory=lambda: _env_int("NOTIFY_MAX_ATTEMPTS", 3))
    notify_batch_budget_seconds: float = field(
        default_factory=lambda: _env_float("NOTIFY_BATCH_BUDGET_SECONDS", 10.0)
    )
    notify_concurrency: int = field(default_factory=lambda: _env_int("NOTIFY_CONCURRENCY", 16))

    @property
    def api_url(self) -> str:
        return _env("API_URL", f"http://{self.gateway_host}:{self.gateway_port}")

    def table(self, name: str) -> str:
        """The physical name of a DynamoDB table ("idempotency" -> "consim-idempotency")."""
        return _env(f"{name.upper()}_TABLE", f"{self.table_prefix}{name}")


def settings() -> Settings:
    """Read the environment now (tests change it between calls)."""
    return Settings()
