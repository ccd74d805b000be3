"""The EMF summariser: which lines count, how values group, the window, the table."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from simulator.metrics import (
    emf_records,
    metrics_command,
    parse_window,
    render_summary,
    summarise,
    summarise_logs,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 3, 18, 0, tzinfo=UTC)


def emf(service: str, at: datetime, unit: str = "Count", **values) -> str:
    return json.dumps(
        {
            "_aws": {
                "Timestamp": int(at.timestamp() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": "ConcurrencySimulator",
                        "Dimensions": [["service"]],
                        "Metrics": [{"Name": name, "Unit": unit} for name in values],
                    }
                ],
            },
            "service": service,
            **values,
        }
    )


def test_only_emf_objects_are_taken():
    lines = [
        '{"level":"INFO","message":"hello"}',
        "plain text with _aws in it",
        '{"_aws": broken',
        "2026-12-03T18:00:00Z stdout " + emf("api", NOW, PaymentsAccepted=[1.0]),
        emf("api", NOW, PaymentsAccepted=1),
    ]

    records = list(emf_records(lines))

    assert len(records) == 2
    assert all(r["service"] == "api" for r in records)


def test_values_group_by_metric_and_service():
    records = emf_records(
        [
            emf("api", NOW, PaymentsAccepted=[1.0]),
            emf("api", NOW, PaymentsAccepted=[1.0, 1.0]),
            emf("api", NOW, PaymentsRejected=1),
            emf("processor", NOW, PaymentsAuthorized=[1.0]),
            emf("processor", NOW, "Milliseconds", ProviderLatency=[10.0, 30.0, 20.0, 40.0]),
        ]
    )

    summary = summarise(records)

    assert summary.records == 5
    assert summary.get("PaymentsAccepted", "api").total == 3
    assert summary.get("PaymentsAccepted", "api").count == 3
    assert summary.get("PaymentsRejected").total == 1
    latency = summary.get("ProviderLatency", "processor")
    assert latency.unit == "Milliseconds"
    assert (latency.minimum, latency.maximum, latency.mean) == (10.0, 40.0, 25.0)
    assert latency.percentile(50) == 20.0
    assert latency.percentile(95) == 40.0
    assert summary.get("PaymentsAccepted", "processor") is None


def test_the_window_keeps_only_records_inside_it():
    records = emf_records(
        [
            emf("api", NOW - timedelta(minutes=30), PaymentsAccepted=5),
            emf("api", NOW - timedelta(minutes=5), PaymentsAccepted=2),
            emf("api", NOW + timedelta(minutes=1), PaymentsAccepted=7),
        ]
    )

    summary = summarise(records, since=NOW - timedelta(minutes=15), until=NOW)

    assert summary.records == 1
    assert summary.total("PaymentsAccepted") == 2


def test_a_metric_named_but_without_a_value_is_ignored():
    line = json.loads(emf("api", NOW, PaymentsAccepted=1))
    del line["PaymentsAccepted"]

    assert summarise([line]).series == []


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), ("5", 300)]
)
def test_parse_window(text, seconds):
    assert parse_window(text) == timedelta(seconds=seconds)


def test_parse_window_rejects_nonsense():
    with pytest.raises(ValueError):
        parse_window("soon")


def test_render_summary_is_a_table():
    summary = summarise(
        emf_records(
            [
                emf("api", NOW, PaymentsAccepted=[1.0, 1.0]),
                emf("processor", NOW, "Milliseconds", ProviderLatency=[12.5, 20.0]),
            ]
        )
    )

    lines = render_summary(summary, "logs").splitlines()

    assert lines[0].startswith("EMF metrics in logs")
    assert lines[1].split()[:4] == ["metric", "service", "unit", "samples"]
    accepted = next(line for line in lines if line.startswith("PaymentsAccepted"))
    assert accepted.split() == ["PaymentsAccepted", "api", "Count", "2", "2"]
    latency = next(line for line in lines if line.startswith("ProviderLatency"))
    assert latency.split()[3:] == ["2", "32.5", "12.5", "12.5", "20", "20"]


def test_summarise_logs_reads_every_file_below_the_folder(tmp_path):
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "stdout.log").write_text(emf("api", NOW, PaymentsAccepted=1) + "\n")
    (tmp_path / "notifier.log").write_text(
        "not json\n" + emf("notifier", NOW, NotificationsSent=[1.0, 1.0]) + "\n"
    )

    summary = summarise_logs(tmp_path)

    assert summary.files == 2
    assert summary.total("PaymentsAccepted") == 1
    assert summary.total("NotificationsSent") == 2


def test_metrics_command_prints_the_window(tmp_path, capsys):
    recent = datetime.now(UTC) - timedelta(minutes=1)
    old = datetime.now(UTC) - timedelta(hours=3)
    (tmp_path / "f.log").write_text(
        emf("api", recent, PaymentsAccepted=1) + "\n" + emf("api", old, PaymentsRejected=1) + "\n"
    )

    status = metrics_command(SimpleNamespace(logs=str(tmp_path), since="15m", all=False))

    out = capsys.readouterr().out
    assert status == 0
    assert "PaymentsAccepted" in out
    assert "PaymentsRejected" not in out
