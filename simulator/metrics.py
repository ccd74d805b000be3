"""``consim metrics``: the EMF metrics the functions logged in a time window, summarised.

Entry points for ``simulator/cli.py`` (each takes the parsed ``argparse.Namespace``)::

    add_metrics_arguments(parser)  # --since 15m, --logs DIR, --all
    metrics_command(args)          # prints the table, returns the exit status

Powertools Metrics prints one JSON object per flush to the function's stdout, in CloudWatch's
embedded metric format: ``_aws.CloudWatchMetrics`` names the metrics and their dimensions, and
the values sit at the top level under each metric's name (a number or a list of numbers).
Locally the emulator keeps each function's output under ``<state dir>/logs/``; this module
reads every file there, so it does not care how the emulator names them. A line may carry a
prefix before the JSON (a stream name, a timestamp): the object is taken from the first ``{``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from consim.config import settings

__all__ = [
    "MetricSeries",
    "MetricsSummary",
    "add_metrics_arguments",
    "emf_records",
    "metrics_command",
    "parse_window",
    "render_summary",
    "summarise",
    "summarise_logs",
]

_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 60, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass
class MetricSeries:
    """All values of one metric from one service in the window."""

    namespace: str
    name: str
    service: str
    unit: str
    values: list[float] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.values)

    @property
    def total(self) -> float:
        return math.fsum(self.values)

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile (q in 0..100) of the values."""
        if not self.values:
            return math.nan
        ordered = sorted(self.values)
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return ordered[min(rank, len(ordered)) - 1]

    @property
    def minimum(self) -> float:
        return min(self.values) if self.values else math.nan

    @property
    def maximum(self) -> float:
        return max(self.values) if self.values else math.nan

    @property
    def mean(self) -> float:
        return self.total / len(self.values) if self.values else math.nan


@dataclass
class MetricsSummary:
    since: datetime | None
    until: datetime | None
    files: int
    records: int
    series: list[MetricSeries]

    def get(self, name: str, service: str | None = None) -> MetricSeries | None:
        for series in self.series:
            if series.name == name and (service is None or series.service == service):
                return series
        return None

    def total(self, name: str) -> float:
        return math.fsum(s.total for s in self.series if s.name == name)


def parse_window(text: str) -> timedelta:
    """'90s', '15m', '2h', '1d' (a bare number is minutes)."""
    match = _WINDOW.match(text or "")
    if not match:
        raise ValueError(f"not a time window: {text!r} (try 15m, 2h, 90s)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def emf_records(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The EMF objects among log lines; anything else (plain logs, broken JSON) is skipped."""
    for line in lines:
        if '"_aws"' not in line:
            continue
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("_aws"), dict):
            yield record


def _values(raw: Any) -> list[float]:
    items = raw if isinstance(raw, list) else [raw]
    return [float(v) for v in items if isinstance(v, int | float) and not isinstance(v, bool)]


def summarise(
    records: Iterable[dict[str, Any]],
    since: datetime | None = None,
    until: datetime | None = None,
    files: int = 0,
) -> MetricsSummary:
    """Group the values by (namespace, metric, service) for records stamped inside the window."""
    low = since.timestamp() * 1000 if since else -math.inf
    high = until.timestamp() * 1000 if until else math.inf
    grouped: dict[tuple[str, str, str], MetricSeries] = {}
    count = 0
    for record in records:
        meta = record["_aws"]
        stamp = meta.get("Timestamp")
        if not isinstance(stamp, int | float) or not low <= stamp <= high:
            continue
        count += 1
        service = str(record.get("service", "-"))
        for directive in meta.get("CloudWatchMetrics") or []:
            namespace = str(directive.get("Namespace", "-"))
            for metric in directive.get("Metrics") or []:
                name = metric.get("Name")
                if not name or name not in record:
                    continue
                key = (namespace, name, service)
                series = grouped.get(key)
                if series is None:
                    unit = str(metric.get("Unit", "None"))
                    series = grouped[key] = MetricSeries(namespace, name, service, unit)
                series.values.extend(_values(record[name]))
    ordered = sorted(grouped.values(), key=lambda s: (s.namespace, s.name, s.service))
    return MetricsSummary(since, until, files, count, ordered)


def _log_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file())


def _lines(paths: Iterable[Path]) -> Iterator[str]:
    for path in paths:
        try:
            with path.open("r", encoding="utf-8", errors="replace") as handle:
                yield from handle
        except OSError:
            continue


def summarise_logs(
    root: Path, since: datetime | None = None, until: datetime | None = None
) -> MetricsSummary:
    files = _log_files(root)
    return summarise(emf_records(_lines(files)), since, until, files=len(files))


def _number(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def render_summary(summary: MetricsSummary, source: str = "") -> str:
    since = summary.since.strftime("%H:%M:%S") if summary.since else "the beginning"
    until = summary.until.strftime("%H:%M:%S UTC") if summary.until else "now"
    head = (
        f"EMF metrics {('in ' + source + ', ') if source else ''}{since} to {until}: "
        f"{summary.records} records from {summary.files} files"
    )
    if not summary.series:
        return head + "\n(no metrics in the window)"
    columns = ("metric", "service", "unit", "samples", "sum", "min", "p50", "p95", "max")
    rows = [columns]
    for s in summary.series:
        counting = s.unit == "Count"
        rows.append(
            (
                s.name,
                s.service,
                s.unit,
                str(s.count),
                _number(s.total),
                _number(s.minimum) if not counting else "",
                _number(s.percentile(50)) if not counting else "",
                _number(s.percentile(95)) if not counting else "",
                _number(s.maximum) if not counting else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    lines = [head]
    for row in rows:
        cells = [
            cell.ljust(widths[i]) if i < 3 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def add_metrics_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", default="15m", help="how far back (90s, 15m, 2h; default 15m)")
    parser.add_argument("--all", action="store_true", help="every record, whatever its time")
    parser.add_argument("--logs", help="log folder or file (default <state dir>/logs)")


def metrics_command(args: argparse.Namespace) -> int:
    """``consim metrics``: summarise the EMF metrics the functions logged in a time window."""
    root = Path(args.logs) if getattr(args, "logs", None) else settings().state_dir / "logs"
    until = datetime.now(UTC)
    try:
        since = None if getattr(args, "all", False) else until - parse_window(args.since)
    except ValueError as error:
        print(f"consim metrics: {error}", file=sys.stderr)
        return 2
    if not root.exists():
        print(f"consim metrics: no logs at {root} (is the stack up?)", file=sys.stderr)
        return 1
    summary = summarise_logs(root, since, None if since is None else until)
    print(render_summary(summary, str(root)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="consim metrics", description=metrics_command.__doc__)
    add_metrics_arguments(parser)
    return metrics_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
