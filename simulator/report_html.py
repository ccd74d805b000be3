"""The HTML report of a run: one self-contained page, plots drawn as inline SVG by hand."""

from __future__ import annotations

import html
import math
from typing import Any

from simulator.figures import CATEGORIES, warmup_note

W, H = 760, 260
PAD_L, PAD_R, PAD_T, PAD_B = 60, 20, 20, 40
COLOURS = {
    "accepted": "#2b7bb9",
    "insufficient-funds": "#e0a030",
    "in-flight": "#8a5cc2",
    "error": "#d9463b",
    "dropped": "#222222",
    "p50": "#1b9e77",
    "p99": "#111111",
    "max": "#999999",
    "webhook": "#2a9d5c",
    "webpush": "#c2548a",
    "api": "#2b7bb9",
    "late": "#d9463b",
    "intended": "#999999",
    "conflicts": "#111111",
}


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exponent = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exponent:
            return step * exponent
    return 10 * exponent


class Plot:
    """A tiny SVG canvas with linear axes."""

    def __init__(
        self,
        x_max: float,
        y_max: float,
        x_label: str,
        y_label: str,
        x_ticks: list[tuple[float, str]] | None = None,
    ) -> None:
        self.x_max = x_max or 1.0
        self.y_max = _nice_max(y_max)
        self.parts: list[str] = []
        ticks = x_ticks or [(self.x_max * i / 5, f"{self.x_max * i / 5:.3g}") for i in range(6)]
        self._axes(x_label, y_label, ticks)

    def x(self, value: float) -> float:
        return PAD_L + (W - PAD_L - PAD_R) * value / self.x_max

    def y(self, value: float) -> float:
        return H - PAD_B - (H - PAD_T - PAD_B) * min(value, self.y_max) / self.y_max

    def _axes(self, x_label: str, y_label: str, ticks: list[tuple[float, str]]) -> None:
        p = self.parts
        p.append(
            f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}" stroke="#444"/>'
        )
        p.append(f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" stroke="#444"/>')
        for i in range(5):
            value = self.y_max * i / 4
            y = self.y(value)
            p.append(
                f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" stroke="#eee"/>'
            )
            p.append(f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{value:g}</text>')
        for value, label in ticks:
            p.append(
                f'<text x="{self.x(value):.1f}" y="{H - PAD_B + 16}" '
                f'text-anchor="middle">{html.escape(label)}</text>'
            )
        p.append(
            f'<text x="{(W + PAD_L) / 2}" y="{H - 6}" text-anchor="middle">'
            f"{html.escape(x_label)}</text>"
        )
        p.append(
            f'<text x="14" y="{H / 2}" transform="rotate(-90 14 {H / 2})" '
            f'text-anchor="middle">{html.escape(y_label)}</text>'
        )

    def line(self, points: list[tuple[float, float]], colour: str, label: str) -> None:
        if not points:
            return
        path = " ".join(f"{self.x(x):.1f},{self.y(y):.1f}" for x, y in points)
        self.parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" '
            f'points="{path}"><title>{html.escape(label)}</title></polyline>'
        )

    def dots(self, points: list[tuple[float, float]], colour: str) -> None:
        for x, y in points:
            self.parts.append(
                f'<circle cx="{self.x(x):.1f}" cy="{self.y(y):.1f}" r="1.6" '
                f'fill="{colour}" fill-opacity="0.55"/>'
            )

    def bar(self, x0: float, width: float, y0: float, y1: float, colour: str) -> None:
        top, bottom = self.y(y1), self.y(y0)
        self.parts.append(
            f'<rect x="{self.x(x0):.1f}" y="{top:.1f}" '
            f'width="{max(self.x(x0 + width) - self.x(x0) - 1, 1):.1f}" '
            f'height="{max(bottom - top, 0):.1f}" fill="{colour}"/>'
        )

    def band(self, x0: float, x1: float, label: str) -> None:
        self.parts.append(
            f'<rect x="{self.x(x0):.1f}" y="{PAD_T}" '
            f'width="{max(self.x(x1) - self.x(x0), 2):.1f}" '
            f'height="{H - PAD_T - PAD_B}" fill="#f4c542" fill-opacity="0.18">'
            f"<title>{html.escape(label)}</title></rect>"
        )

    def svg(self, legend: list[str]) -> str:
        keys = "".join(
            f'<span class="key"><i style="background:{COLOURS.get(k, "#666")}"></i>'
            f"{html.escape(k)}</span>"
            for k in legend
        )
        return (
            f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}">{"".join(self.parts)}'
            f'</svg><div class="legend">{keys}</div>'
        )


def _timeline_bands(plot: Plot, timeline: list[dict[str, Any]]) -> None:
    for happening in timeline:
        start = happening.get("started") or happening["at"]
        end = happening.get("finished") or start
        plot.band(start, max(end, start + 0.3), happening["label"])


def latency_over_time(figures: dict[str, Any], timeline: list[dict[str, Any]]) -> str:
    points = figures["latency_points"]
    series = figures["series"]
    x_max = max([p[0] for p in points] + [len(series)] + [1])
    y_max = max([p[1] for p in points] + [1])
    plot = Plot(x_max, y_max, "intended send time (s)", "API latency (ms)")
    _timeline_bands(plot, timeline)
    for cat in CATEGORIES:
        plot.dots([(p[0], p[1]) for p in points if p[2] == cat], COLOURS[cat])
    plot.line([(r["t"] + 0.5, r["p99_ms"]) for r in series if r["p99_ms"]], COLOURS["p99"], "p99")
    plot.line([(r["t"] + 0.5, r["p50_ms"]) for r in series if r["p50_ms"]], COLOURS["p50"], "p50")
    present = sorted({p[2] for p in points})
    return plot.svg([*present, "p50", "p99"])


def _nines(percentile: float) -> float:
    return -math.log10(max(1 - percentile / 100, 1e-5))


def distribution(figures: dict[str, Any]) -> str:
    curves = {"api": figures["api_distribution"], **figures["e2e_distribution"]}
    y_max = max([v for c in curves.values() for _, v in c] + [1])
    ticks = [(0, "0%"), (1, "90%"), (2, "99%"), (3, "99.9%"), (4, "99.99%"), (5, "99.999%")]
    plot = Plot(5, y_max, "percentile", "latency (ms)", ticks)
    for name, curve in curves.items():
        plot.line([(_nines(p), v) for p, v in curve], COLOURS.get(name, "#666"), name)
    return plot.svg(list(curves))


def throughput(figures: dict[str, Any], timeline: list[dict[str, Any]]) -> str:
    series = figures["series"]
    y_max = max([r["intended"] for r in series] + [1])
    plot = Plot(max(len(series), 1), y_max, "second of the run", "sends per second")
    _timeline_bands(plot, timeline)
    for row in series:
        base = 0
        for cat in CATEGORIES:
            if row[cat]:
                plot.bar(row["t"], 1, base, base + row[cat], COLOURS[cat])
                base += row[cat]
    return plot.svg(list(CATEGORIES))


def conflicts(figures: dict[str, Any], system: dict[str, Any]) -> str:
    series = figures["series"]
    rows = [(r["t"] + 0.5, r["insufficient-funds"], r["in-flight"], r["late"]) for r in series]
    retries = [(t + 0.5, v) for t, v in system.get("reservation_conflicts", [])]
    y_max = max([max(a, b, c) for _, a, b, c in rows] + [v for _, v in retries] + [1])
    plot = Plot(max(len(series), 1), y_max, "second of the run", "per second")
    plot.line([(t, a) for t, a, _, _ in rows], COLOURS["insufficient-funds"], "422 over limit")
    plot.line([(t, b) for t, _, b, _ in rows], COLOURS["in-flight"], "409 duplicate in flight")
    plot.line([(t, c) for t, _, _, c in rows], COLOURS["late"], "late sends")
    plot.dots(retries, COLOURS["conflicts"])
    legend = ["insufficient-funds", "in-flight", "late", "conflicts"]
    return plot.svg(legend)


def _table(headers: list[str], rows: list[list[Any]], ok_column: int | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cls = ""
        if ok_column is not None:
            cls = ' class="ok"' if row[ok_column] else ' class="bad"'
        cells = "".join(
            f"<td>{html.escape('PASS' if v is True else 'FAIL' if v is False else str(v))}</td>"
            for v in row
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _latency_rows(figures: dict[str, Any]) -> list[list[Any]]:
    rows = []
    named = {"API (POST /payments)": figures["api_latency"]}
    named.update({f"end to end ({k})": v for k, v in figures["e2e_latency"].items()})
    for name, p in named.items():
        rows.append(
            [
                name,
                p["count"],
                f"{p['p50_ms']:.1f}",
                f"{p['p90_ms']:.1f}",
                f"{p['p99_ms']:.1f}",
                f"{p['p99.9_ms']:.1f}",
                f"{p['max_ms']:.1f}",
            ]
        )
    return rows


STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:860px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;min-width:60px;
padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f4f4f4}tr.ok td:last-child{color:#1a7f37}
tr.bad td{background:#fdecea}svg text{font-size:11px;fill:#444}
.legend{margin:2px 0 10px 60px}.key{margin-right:14px}.key i{display:inline-block;width:10px;
height:10px;margin-right:4px}.verdict{font-size:18px;font-weight:bold}
.pass{color:#1a7f37}.fail{color:#d9463b}pre{background:#f6f6f6;padding:8px;overflow:auto}
"""


def render(run: dict[str, Any]) -> str:
    figures = run["figures"]
    timeline = run.get("timeline", [])
    checks = run.get("checks", [])
    slos = run.get("slos", [])
    ok = run.get("ok", False)
    verdict = '<span class="pass">PASSED</span>' if ok else '<span class="fail">FAILED</span>'
    counts = figures["categories"]
    summary_rows = [
        ["payments planned", figures["payment_keys"]],
        ["sends (incl. duplicates)", figures["sends_planned"]],
        [
            "offered payment rate",
            f"{figures.get('offered_rate', figures.get('achieved_rate', 0)):.1f}/s",
        ],
        ["accepted payments", figures["payments_accepted"]],
        *[[f"answers: {k}", v] for k, v in counts.items()],
        ["late sends", f"{figures['late']} ({figures['late_share']:.2%})"],
        ["notifications received", figures["notifications"]],
        [
            "drain",
            f"{run.get('drain', {}).get('seconds', 0):.1f}s, "
            f"{run.get('drain', {}).get('pending', 0)} pending",
        ],
    ]
    timeline_rows = [
        [
            f"{h['at']:.1f}s",
            h["label"],
            f"{(h.get('finished') or 0) - (h.get('started') or 0):.1f}s",
            h.get("error") or "ok",
        ]
        for h in timeline
    ]
    totals = (run.get("system_metrics") or {}).get("totals", {})
    metric_rows = [[name, f"{value:g}"] for name, value in totals.items()]
    check_rows = [[c["title"], c["checked"], c["detail"], c["ok"]] for c in checks]
    slo_rows = [[s["name"], s["target"], s["actual"], s["ok"]] for s in slos]
    sections = [
        f"<h1>consim run {html.escape(run['run_id'])}: {html.escape(run['scenario'])}</h1>",
        f"<p class=verdict>{verdict}</p><p>{html.escape(run.get('description', ''))}</p>",
        f"<p>started {html.escape(run.get('started_at', ''))}, against "
        f"{html.escape(run.get('api_url', ''))}</p>",
        "<h2>Invariants</h2>",
        _table(["invariant", "checked", "detail", "held"], check_rows, ok_column=3),
        "<h2>Service levels</h2>",
        _table(["objective", "target", "measured", "met"], slo_rows, ok_column=3),
        "<h2>Latency</h2>",
        _table(
            ["measure", "count", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"],
            _latency_rows(figures),
        ),
        "<p>Latency is measured from each request's <em>intended</em> send time (open model)."
        f" {html.escape(warmup_note(figures))}</p>",
        "<h2>Latency over time</h2>",
        latency_over_time(figures, timeline),
        "<h2>Latency distribution</h2>",
        distribution(figures),
        "<h2>Throughput</h2>",
        throughput(figures, timeline),
        "<h2>Reservation conflicts, duplicates in flight, late sends</h2>",
        conflicts(figures, run.get("system_metrics") or {}),
        "<p>conflicts: the API's ReservationConflicts metric (appends that lost the race for an "
        "account's stream and retried), per second, from the functions' EMF metrics.</p>",
        "<h2>Run</h2>",
        _table(["figure", "value"], summary_rows),
        "<h2>The functions' own counts over the run (EMF metrics)</h2>",
        _table(["metric", "total"], metric_rows) if metric_rows else "<p>none found</p>",
        "<h2>Timeline</h2>",
        _table(["at", "what", "took", "result"], timeline_rows)
        if timeline_rows
        else "<p>nothing scheduled</p>",
    ]
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>consim "
        f"{html.escape(run['scenario'])}</title><style>{STYLE}</style></head><body>"
        f"{''.join(sections)}</body></html>"
    )
