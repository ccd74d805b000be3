"""The stack's one API client: a key generated on first `up`, registered in the clients table."""

from __future__ import annotations

import secrets

from consim.config import Settings

from infra import dynamodb
from infra.layout import Layout

CLIENT_ID = "local"
CLIENT_NAME = "local developer"


def api_key(layout: Layout) -> str | None:
    try:
        return layout.api_key_file.read_text().strip() or None
    except FileNotFoundError:
        return None


def ensure_local_client(config: Settings, layout: Layout) -> str:
    """Make the key if there is none and (re-)register it: the table may be new, the key not."""
    key = api_key(layout)
    if key is None:
        key = secrets.token_urlsafe(32)
        layout.api_key_file.parent.mkdir(parents=True, exist_ok=True)
        layout.api_key_file.write_text(key + "\n")
        layout.api_key_file.chmod(0o600)
    table = dynamodb.client(config.dynamodb_endpoint, config.aws_region)
    table.put_item(
        TableName=config.table("clients"),
        Item={
            "api_key": {"S": key},
            "client_id": {"S": CLIENT_ID},
            "name": {"S": CLIENT_NAME},
        },
    )
    return key
