"""The stack's endpoints as environment variables: for `env`, for the emulator, for the tests."""

from __future__ import annotations

import os
import shlex

from consim.config import Settings

from infra import clients
from infra.layout import Layout

# Passed through when the person set them, so `eval "$(make -s env)"` reproduces this stack.
_PASSED_THROUGH = ("CONSIM_PORT_OFFSET", "CONSIM_STATE_DIR", "TABLE_PREFIX")


def stack_env(config: Settings, layout: Layout) -> dict[str, str]:
    env = {
        "API_URL": config.api_url,
        "KAFKA_BOOTSTRAP": config.kafka_bootstrap,
        "DATABASE_URL": config.database_url,
        "DYNAMODB_ENDPOINT": config.dynamodb_endpoint,
        "XRAY_ENDPOINT": config.xray_endpoint,
        "AWS_XRAY_DAEMON_ADDRESS": config.xray_daemon_address,
        "AWS_REGION": config.aws_region,
        "AWS_DEFAULT_REGION": config.aws_region,
        # Local endpoints check no signature, yet botocore refuses to sign without credentials.
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        # The native stack's push endpoints and webhooks (local receivers, the live page's own
        # hook) are plain http on the loopback interface; elsewhere only https is accepted.
        "CONSIM_ALLOW_LOOPBACK_PUSH": "1",
    }
    key = clients.api_key(layout)
    if key is not None:
        env["API_KEY"] = key
    for name in _PASSED_THROUGH:
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def shell_assignments(env: dict[str, str]) -> str:
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())
