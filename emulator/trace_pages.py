"""The trace viewer's pages, mounted by the gateway at ``/_traces``.

    app.add_subapp("/_traces", trace_pages.create_app(settings))
    # or, with the bare /_traces redirected to /_traces/ as well:
    trace_pages.mount(app, settings)

Pages: ``/_traces/`` (recent traces, ``?minutes=15``), ``/_traces/<trace id>`` (waterfall and
service map), ``/_traces/payment/<payment id>`` (redirects to the payment's trace) and
``/_traces/metrics`` (the EMF summary, ``?since=15m``). They read the X-Ray API through the
same reader as ``consim trace``, so they show whatever endpoint the settings name.
"""

from __future__ import annotations

import asyncio
import html
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from consim.config import Settings
from consim.tracing_waterfall import HTTP, ServiceMap, Trace, service_map

from simulator.metrics import parse_window, summarise_logs
from simulator.tracing import TraceViewerError, XRayReader, payment_trace_ids

_SETTINGS = web.AppKey("settings", Settings)
_READER = web.AppKey("reader", XRayReader)

# The list page fetches each listed trace to name its services (summaries from moto's server
# carry none), so it shows at most this many.
_LIST_LIMIT = 40

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#222}
a{color:#0b5cad;text-decoration:none}a:hover{text-decoration:underline}
table{border-collapse:collapse;width:100%}td,th{padding:2px 6px;text-align:left;
vertical-align:middle;white-space:nowrap}th{border-bottom:1px solid #bbb;font-weight:600}
tr:nth-child(even){background:#f6f7f9}.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{position:relative;height:12px;min-width:320px}.bar span{position:absolute;top:0;height:12px;
border-radius:2px;min-width:2px}.seg{background:#3b7dd8}.sub{background:#9cc0ee}
.Postgres{background:#5a8f4e}.DynamoDB{background:#c77d1a}.Kafka{background:#7a5ab8}
.HTTP{background:#b84a6a}.fault{outline:2px solid #c00}.mark{color:#c00;font-weight:700}
.cause{color:#c00;font-size:12px}nav{margin-bottom:1rem}h1{font-size:20px}h2{font-size:16px}
.muted{color:#777}
"""


def create_app(settings: Settings, reader: XRayReader | None = None) -> web.Application:
    app = web.Application()
    app[_SETTINGS] = settings
    app[_READER] = reader or XRayReader.from_settings(settings)
    app.router.add_get("/", _list)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/payment/{payment_id}", _payment)
    app.router.add_get("/{trace_id}", _trace)
    return app


def mount(
    root: web.Application,
    settings: Settings,
    prefix: str = "/_traces",
    reader: XRayReader | None = None,
) -> None:
    """Mount the pages under ``prefix`` on the gateway's application."""

    async def to_index(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{prefix}/")

    root.router.add_get(prefix, to_index)
    root.add_subapp(prefix, create_app(settings, reader))


def _page(title: str, body: str) -> web.Response:
    document = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><nav><a href='/_traces/'>traces</a> · "
        f"<a href='/_traces/metrics'>metrics</a></nav>{body}</body></html>"
    )
    return web.Response(text=document, content_type="text/html")


def _error(status: type[web.HTTPException], message: str) -> web.HTTPException:
    body = f"<h1>{html.escape(message)}</h1>"
    document = (
        f"<!doctype html><html><head><style>{_STYLE}</style></head><body>{body}</body></html>"
    )
    return status(text=document, content_type="text/html")


async def _list(request: web.Request) -> web.Response:
    if payment := request.query.get("payment", "").strip():
        raise web.HTTPFound(f"/_traces/payment/{payment}")
    reader = request.app[_READER]
    try:
        minutes = float(request.query.get("minutes", "15"))
    except ValueError as error:
        raise _error(web.HTTPBadRequest, "minutes must be a number") from error
    summaries = await asyncio.to_thread(reader.summaries, timedelta(minutes=minutes))
    shown = summaries[:_LIST_LIMIT]
    traces = {t.id: t for t in await asyncio.to_thread(reader.traces, [s.id for s in shown])}

    rows = []
    for summary in shown:
        trace = traces.get(summary.id)
        services = ", ".join(trace.services) if trace else ""
        payment = trace.annotation("payment_id") if trace else None
        duration = f"{trace.duration * 1000:.1f}" if trace else "-"
        spans = sum(1 for _ in trace.spans()) if trace else 0
        marks = ("F" if summary.has_fault else "") + ("E" if summary.has_error else "")
        rows.append(
            f"<tr><td><a href='/_traces/{html.escape(summary.id)}'>{html.escape(summary.id)}</a>"
            f"</td><td>{summary.started:%H:%M:%S}</td><td class='num'>{duration}</td>"
            f"<td class='num'>{spans}</td><td class='mark'>{marks}</td>"
            f"<td>{html.escape(services)}</td><td>{html.escape(str(payment or ''))}</td></tr>"
        )
    more = (
        f"<p class='muted'>{len(summaries) - len(shown)} older traces not shown.</p>"
        if len(summaries) > len(shown)
        else ""
    )
    body = (
        f"<h1>Traces of the last {minutes:g} minutes</h1>"
        "<form><label>minutes <input name='minutes' size='4' "
        f"value='{minutes:g}'></label> <label>payment <input name='payment' size='36'></label> "
        "<button>show</button></form>"
        "<table><tr><th>trace</th><th>started (UTC)</th><th class='num'>ms</th>"
        "<th class='num'>entities</th><th></th><th>services</th><th>payment</th></tr>"
        + ("".join(rows) or "<tr><td colspan='7' class='muted'>no traces yet</td></tr>")
        + f"</table>{more}"
    )
    return _page("Traces", body)


async def _payment(request: web.Request) -> web.Response:
    payment_id = request.match_info["payment_id"]
    try:
        trace_ids = await asyncio.to_thread(payment_trace_ids, payment_id, request.app[_SETTINGS])
    except TraceViewerError as error:
        raise _error(web.HTTPNotFound, str(error)) from error
    raise web.HTTPFound(f"/_traces/{trace_ids[0]}")


async def _trace(request: web.Request) -> web.Response:
    trace_id = request.match_info["trace_id"]
    traces = await asyncio.to_thread(request.app[_READER].traces, [trace_id])
    if not traces or not traces[0].roots:
        raise _error(web.HTTPNotFound, f"no segments for trace {trace_id} (yet)")
    trace = traces[0]
    return _page(f"Trace {trace_id}", render_trace_html(trace))


def render_trace_html(trace: Trace) -> str:
    total = trace.duration or 1e-9
    started = datetime.fromtimestamp(trace.start, UTC)
    rows = []
    for row in trace.rows():
        span = row.span
        left = row.offset / total * 100
        width = max(0.2, (span.duration or 0.0) / total * 100)
        kind = "seg" if span.is_segment else (span.remote or "sub")
        fault = " fault" if span.fault or span.error else ""
        title = html.escape(f"{span.label}: {(span.duration or 0) * 1000:.1f} ms")
        label = html.escape(span.label)
        if span.is_segment:
            label = f"<b>{label}</b>"
        if row.caller is not None:
            caller = html.escape(f"{row.caller.service}: {row.caller.label}")
            label += f" <span class='muted'>&larr; {caller}</span>"
        cause = f"<div class='cause'>{html.escape(span.cause)}</div>" if span.cause else ""
        duration = "…" if span.duration is None else f"{span.duration * 1000:.1f}"
        rows.append(
            f"<tr><td class='num'>{row.offset * 1000:.1f}</td><td class='num'>{duration}</td>"
            f"<td class='mark'>{span.marks}</td>"
            f"<td style='padding-left:{6 + row.depth * 16}px'>{label}{cause}</td>"
            f"<td class='muted'>{html.escape(span.service)}</td>"
            f"<td>{span.http_status or ''}</td><td><div class='bar' title='{title}'>"
            f"<span class='{kind}{fault}' style='left:{left:.2f}%;width:{width:.2f}%'></span>"
            "</div></td></tr>"
        )
    annotations = {
        key: trace.annotation(key)
        for key in ("payment_id", "account_id")
        if trace.annotation(key) is not None
    }
    facts = " · ".join(f"{k} <code>{html.escape(str(v))}</code>" for k, v in annotations.items())
    return (
        f"<h1>Trace <code>{html.escape(trace.id)}</code></h1>"
        f"<p>{started:%Y-%m-%d %H:%M:%S.%f} UTC · {trace.duration * 1000:.1f} ms · "
        f"{len(trace.segments)} segments · services: {html.escape(', '.join(trace.services))}"
        f"{' · ' + facts if facts else ''}</p>"
        "<h2>Service map</h2>"
        f"{render_service_map_svg(service_map(trace))}"
        "<h2>Waterfall</h2><table><tr><th class='num'>start ms</th><th class='num'>ms</th>"
        "<th></th><th>service / operation</th><th>in</th><th>status</th><th>timeline</th></tr>"
        + "".join(rows)
        + "</table><p class='muted'>F fault, E error, T throttled</p>"
    )


def render_service_map_svg(graph: ServiceMap) -> str:
    """Nodes in columns by their distance from the first service; edges with call counts."""
    if not graph.nodes:
        return "<p class='muted'>no services</p>"
    depth = {graph.nodes[0]: 0}
    changed = True
    while changed:
        changed = False
        for edge in graph.edges:
            if edge.source in depth and depth.get(edge.target, 10**6) > depth[edge.source] + 1:
                depth[edge.target] = depth[edge.source] + 1
                changed = True
    for node in graph.nodes:
        depth.setdefault(node, 0)
    columns: dict[int, list[str]] = {}
    for node in graph.nodes:
        columns.setdefault(depth[node], []).append(node)
    position: dict[str, tuple[int, int]] = {}
    for column, names in columns.items():
        for row, name in enumerate(names):
            position[name] = (20 + column * 200, 20 + row * 56)
    width = 20 + (max(columns) + 1) * 200
    height = 20 + max(len(v) for v in columns.values()) * 56

    parts = [
        f"<svg width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg' "
        "font-size='12'><defs><marker id='arrow' viewBox='0 0 10 10' refX='10' refY='5' "
        "markerWidth='6' markerHeight='6' orient='auto'><path d='M0,0L10,5L0,10z' fill='#888'/>"
        "</marker></defs>"
    ]
    for edge in graph.edges:
        (x1, y1), (x2, y2) = position[edge.source], position[edge.target]
        colour = "#c00" if edge.faults else "#888"
        sx, ex = (x1 + 150, x2) if x2 > x1 else (x1 + 75, x2 + 75)
        sy, ey = (y1 + 16, y2 + 16) if x2 > x1 else (y1 + 32, y2)
        label = f"{edge.calls} calls, {edge.seconds * 1000:.0f} ms"
        parts.append(
            f"<line x1='{sx}' y1='{sy}' x2='{ex}' y2='{ey}' stroke='{colour}' "
            "marker-end='url(#arrow)'/>"
            f"<text x='{(sx + ex) / 2:.0f}' y='{(sy + ey) / 2 - 3:.0f}' fill='#555' "
            f"text-anchor='middle'>{html.escape(label)}</text>"
        )
    remote_kinds = {"Postgres", "DynamoDB", "Kafka"}
    for name, (x, y) in position.items():
        fill = "#e8f0fb" if name not in remote_kinds and "/" not in name else "#f3efe6"
        if name == HTTP:
            fill = "#f8e8ee"
        parts.append(
            f"<rect x='{x}' y='{y}' width='150' height='32' rx='6' fill='{fill}' "
            f"stroke='#778'/><text x='{x + 75}' y='{y + 20}' text-anchor='middle'>"
            f"{html.escape(name[:22])}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


async def _metrics(request: web.Request) -> web.Response:
    settings = request.app[_SETTINGS]
    since_text = request.query.get("since", "15m")
    try:
        window = parse_window(since_text)
    except ValueError as error:
        raise _error(web.HTTPBadRequest, str(error)) from error
    until = datetime.now(UTC)
    root = settings.state_dir / "logs"
    summary = await asyncio.to_thread(summarise_logs, root, until - window, until)
    rows = []
    for s in summary.series:
        counting = s.unit == "Count"
        cells: list[Any] = [s.name, s.service, s.unit, s.count, f"{s.total:g}"]
        cells += (
            ["", "", "", ""]
            if counting
            else [f"{v:.1f}" for v in (s.minimum, s.percentile(50), s.percentile(95), s.maximum)]
        )
        rows.append(
            "<tr>"
            + "".join(
                f"<td{' class=num' if i >= 3 else ''}>{html.escape(str(c))}</td>"
                for i, c in enumerate(cells)
            )
            + "</tr>"
        )
    body = (
        f"<h1>Metrics of the last {html.escape(since_text)}</h1>"
        f"<form><label>since <input name='since' size='5' value='{html.escape(since_text)}'>"
        "</label> <button>show</button></form>"
        f"<p class='muted'>{summary.records} EMF records from {summary.files} log files in "
        f"{html.escape(str(root))}</p><table><tr><th>metric</th><th>service</th><th>unit</th>"
        "<th class='num'>samples</th><th class='num'>sum</th><th class='num'>min</th>"
        "<th class='num'>p50</th><th class='num'>p95</th><th class='num'>max</th></tr>"
        + ("".join(rows) or "<tr><td colspan='9' class='muted'>no metrics in the window</td></tr>")
        + "</table>"
    )
    return _page("Metrics", body)
