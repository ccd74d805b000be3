"""The declared tables and topics (infra/tables.json, infra/topics.json) with their real names."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from consim.config import Settings

from infra.layout import INFRA_DIR

_CREATE_TABLE_KEYS = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes")


@dataclass(frozen=True)
class TableSpec:
    name: str
    physical_name: str
    definition: dict[str, Any]

    def create_request(self) -> dict[str, Any]:
        """The keyword arguments of boto3's create_table for this table."""
        request = {k: v for k, v in self.definition.items() if k in _CREATE_TABLE_KEYS}
        return {"TableName": self.physical_name, "BillingMode": "PAY_PER_REQUEST", **request}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


def tables(config: Settings) -> list[TableSpec]:
    declared = json.loads((INFRA_DIR / "tables.json").read_text())["tables"]
    return [TableSpec(t["name"], config.table(t["name"]), t) for t in declared]


def topics(config: Settings) -> list[TopicSpec]:
    declared = json.loads((INFRA_DIR / "topics.json").read_text())["topics"]
    return [
        TopicSpec(getattr(config, t["setting"]), int(t["partitions"]), dict(t.get("configs", {})))
        for t in declared
    ]
