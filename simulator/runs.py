"""Run folders: reports/<UTC time>-<scenario>/ with the scenario, raw record and report."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from consim.config import REPO_ROOT

RUN_FILE = "run.json"
EVIDENCE_FILE = "evidence.json"
REPORT_FILE = "report.html"
SCENARIO_FILE = "scenario.yaml"


class RunNotFound(LookupError):
    """No run folder by that name, or no run at all yet."""


def reports_dir() -> Path:
    return Path(os.environ.get("CONSIM_REPORTS_DIR") or REPO_ROOT / "reports")


def new_run_dir(scenario: str, now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    path = reports_dir() / f"{stamp}-{scenario}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = reports_dir() / f"{stamp}-{scenario}-{suffix}"
    path.mkdir(parents=True)
    return path


def find(run: str | None) -> Path:
    """A run folder by path or name; the newest one when run is None."""
    if run:
        for candidate in (Path(run), reports_dir() / run):
            if (candidate / RUN_FILE).exists():
                return candidate
        raise RunNotFound(f"no run {run!r} (looked in {reports_dir()})")
    runs = sorted(p for p in reports_dir().glob("*/") if (p / RUN_FILE).exists())
    if not runs:
        raise RunNotFound(f"no runs yet in {reports_dir()}: `consim run demo` makes one")
    return runs[-1]


def _default(value: Any) -> Any:
    if isinstance(value, set | tuple):
        return list(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, default=_default))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_scenario(path: Path, raw: dict[str, Any]) -> None:
    (path / SCENARIO_FILE).write_text(yaml.safe_dump(raw, sort_keys=False))
