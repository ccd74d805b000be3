"""Latency recording in HdrHistogram: microsecond values, 3 significant digits, up to an hour."""

from __future__ import annotations

from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

_LOWEST_US = 1
_HIGHEST_US = 3_600_000_000
_DIGITS = 3

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(_LOWEST_US, _HIGHEST_US, _DIGITS)


def record_ms(histogram: HdrHistogram, millis: float) -> None:
    micros = min(max(int(millis * 1000), _LOWEST_US), _HIGHEST_US)
    histogram.record_value(micros)


@dataclass(frozen=True)
class Percentiles:
    count: int
    p50: float
    p90: float
    p99: float
    p999: float
    max: float

    def as_dict(self) -> dict[str, float]:
        return {
            "count": self.count,
            "p50_ms": self.p50,
            "p90_ms": self.p90,
            "p99_ms": self.p99,
            "p99.9_ms": self.p999,
            "max_ms": self.max,
        }


def percentiles(histogram: HdrHistogram) -> Percentiles:
    """The percentiles in milliseconds (zeros when nothing was recorded)."""
    count = histogram.get_total_count()
    if count == 0:
        return Percentiles(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    at = {p: histogram.get_value_at_percentile(p) / 1000 for p in PERCENTILES}
    return Percentiles(
        count=count,
        p50=at[50.0],
        p90=at[90.0],
        p99=at[99.0],
        p999=at[99.9],
        # No mean: HdrHistogram's walks every bucket in Python (~0.1 s), and tails matter here.
        max=histogram.get_max_value() / 1000,
    )


def from_values_ms(values: list[float]) -> HdrHistogram:
    histogram = new_histogram()
    for value in values:
        record_ms(histogram, value)
    return histogram


def distribution(histogram: HdrHistogram) -> list[tuple[float, float]]:
    """(percentile, latency ms) pairs along a log-like percentile axis, for plots."""
    if histogram.get_total_count() == 0:
        return []
    points = [0.0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100.0]
    return [(p, histogram.get_value_at_percentile(p) / 1000) for p in points]
