"""X-Ray segment documents turned into a waterfall and a service map (pure: no I/O).

Documents come from BatchGetTraces. AWS returns each segment with its subsegments nested;
moto's server returns every document as it was sent, so subsegments streamed on their own
(``"type": "subsegment"`` with a ``parent_id``) arrive as separate documents. Both shapes end
in the same tree here: an entity's parent is the one that nests it, else the entity whose id is
its ``parent_id``; an entity whose parent is nowhere in the trace is a root.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

POSTGRES = "Postgres"
DYNAMODB = "DynamoDB"
KAFKA = "Kafka"
HTTP = "HTTP"


@dataclass
class Span:
    """One segment or subsegment."""

    id: str
    trace_id: str
    name: str
    is_segment: bool
    start: float
    end: float | None
    parent_id: str | None = None
    origin: str | None = None
    namespace: str | None = None
    error: bool = False
    fault: bool = False
    throttle: bool = False
    annotations: dict[str, Any] = field(default_factory=dict)
    operation: str | None = None
    remote: str | None = None
    http_status: int | None = None
    cause: str | None = None
    service: str = ""
    children: list[Span] = field(default_factory=list)
    parent: Span | None = field(default=None, repr=False, compare=False)

    @property
    def duration(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - self.start)

    @property
    def label(self) -> str:
        if self.is_segment:
            return f"{self.name} ({self.origin})" if self.origin else self.name
        return f"{self.name} {self.operation}" if self.operation else self.name

    @property
    def marks(self) -> str:
        return "".join(
            mark
            for mark, flag in (("F", self.fault), ("E", self.error), ("T", self.throttle))
            if flag
        )


@dataclass
class Row:
    depth: int
    span: Span
    offset: float

    @property
    def caller(self) -> Span | None:
        """For a segment: the entity in another service that called it (its parent)."""
        return self.span.parent if self.span.is_segment else None


@dataclass
class Trace:
    id: str
    roots: list[Span]

    def spans(self) -> Iterator[Span]:
        stack = list(reversed(self.roots))
        while stack:
            span = stack.pop()
            yield span
            stack.extend(reversed(span.children))

    @property
    def start(self) -> float:
        return min((s.start for s in self.spans()), default=0.0)

    @property
    def end(self) -> float:
        ends = [s.end if s.end is not None else s.start for s in self.spans()]
        return max(ends, default=self.start)

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def segments(self) -> list[Span]:
        return [s for s in self.spans() if s.is_segment]

    @property
    def services(self) -> list[str]:
        seen: dict[str, None] = {}
        for span in sorted(self.segments, key=lambda s: s.start):
            seen.setdefault(span.service, None)
        return list(seen)

    @property
    def has_fault(self) -> bool:
        return any(s.fault for s in self.spans())

    @property
    def has_error(self) -> bool:
        return any(s.error for s in self.spans())

    def annotation(self, key: str) -> Any:
        for span in self.spans():
            if key in span.annotations:
                return span.annotations[key]
        return None

    def rows(self) -> list[Row]:
        """The lines of the waterfall: one block per segment, blocks in time order, and in each
        block the segment's subsegments depth-first, in time order.

        A segment called by another service (the processor under the API's Kafka produce)
        starts its own block instead of nesting inside its caller's: nested, a long consumer
        would push the rest of its caller's subsegments far below, out of time order.
        """
        origin = self.start
        rows: list[Row] = []

        def walk(span: Span, depth: int) -> None:
            rows.append(Row(depth, span, span.start - origin))
            for child in sorted(span.children, key=lambda s: s.start):
                if not child.is_segment:
                    walk(child, depth + 1)

        heads = [s for s in self.spans() if s.is_segment or s.parent is None]
        for head in sorted(heads, key=lambda s: s.start):
            walk(head, 0)
        return rows


def parse_trace(trace_id: str, documents: Iterable[str | dict[str, Any]]) -> Trace:
    spans: dict[str, Span] = {}
    nested_parent: dict[str, str] = {}

    def visit(doc: dict[str, Any], parent: Span | None) -> None:
        span = _span(doc, trace_id, parent)
        if span.id in spans:
            # The same entity twice (sent in progress, then complete): keep the later word.
            _merge(spans[span.id], span)
        else:
            spans[span.id] = span
        if parent is not None:
            nested_parent[span.id] = parent.id
        for child in doc.get("subsegments") or []:
            visit(child, spans[span.id])

    for document in documents:
        visit(json.loads(document) if isinstance(document, str) else document, None)

    roots: list[Span] = []
    for span in spans.values():
        parent_id = nested_parent.get(span.id) or span.parent_id
        parent = spans.get(parent_id) if parent_id else None
        if parent is None or parent is span or _is_ancestor(span, parent, spans, nested_parent):
            roots.append(span)
        else:
            parent.children.append(span)
            span.parent = parent

    for root in roots:
        _inherit_service(root, root.name)
    return Trace(trace_id, sorted(roots, key=lambda s: s.start))


def _is_ancestor(
    span: Span, candidate: Span, spans: dict[str, Span], nested: dict[str, str]
) -> bool:
    """Guards against cycles in malformed documents: is ``span`` above ``candidate``?"""
    seen = set()
    current: Span | None = candidate
    while current is not None and current.id not in seen:
        if current is span:
            return True
        seen.add(current.id)
        parent_id = nested.get(current.id) or current.parent_id
        current = spans.get(parent_id) if parent_id else None
    return False


def _inherit_service(span: Span, service: str) -> None:
    if span.is_segment:
        service = span.name
    span.service = service
    for child in span.children:
        _inherit_service(child, service)


def _merge(kept: Span, newer: Span) -> None:
    if newer.end is not None:
        kept.end = newer.end
    kept.error |= newer.error
    kept.fault |= newer.fault
    kept.throttle |= newer.throttle
    kept.annotations.update(newer.annotations)
    kept.http_status = newer.http_status or kept.http_status
    kept.cause = newer.cause or kept.cause


def _span(doc: dict[str, Any], trace_id: str, parent: Span | None) -> Span:
    is_segment = parent is None and doc.get("type") != "subsegment"
    end = doc.get("end_time")
    http = doc.get("http") or {}
    response = http.get("response") or {}
    span = Span(
        id=str(doc.get("id")),
        trace_id=str(doc.get("trace_id") or (parent.trace_id if parent else trace_id)),
        name=str(doc.get("name", "?")),
        is_segment=is_segment,
        start=float(doc.get("start_time", 0.0)),
        end=None if end is None or doc.get("in_progress") is True else float(end),
        parent_id=doc.get("parent_id"),
        origin=doc.get("origin"),
        namespace=doc.get("namespace"),
        error=bool(doc.get("error")),
        fault=bool(doc.get("fault")),
        throttle=bool(doc.get("throttle")),
        annotations=dict(doc.get("annotations") or {}),
        http_status=response.get("status"),
        cause=_cause(doc.get("cause")),
    )
    span.remote, span.operation = _classify(doc, span)
    return span


def _cause(cause: Any) -> str | None:
    if not isinstance(cause, dict):
        return None
    for exception in cause.get("exceptions") or []:
        kind = exception.get("type") or "Exception"
        message = exception.get("message") or ""
        return f"{kind}: {message}".rstrip(": ")
    return None


def _classify(doc: dict[str, Any], span: Span) -> tuple[str | None, str | None]:
    """Which outside system a subsegment calls, and the operation to show next to its name."""
    aws = doc.get("aws") or {}
    http = doc.get("http") or {}
    request = http.get("request") or {}
    operation = span.annotations.get("operation")
    name = span.name

    if doc.get("sql") is not None or name == POSTGRES:
        return POSTGRES, operation or (doc.get("sql") or {}).get("sanitized_query")
    if name.lower() == "dynamodb" or "table_name" in aws:
        table = aws.get("table_name")
        op = operation or aws.get("operation")
        return DYNAMODB, f"{op} {table}" if op and table else op
    if name == KAFKA:
        topic = span.annotations.get("topic")
        return KAFKA, f"{operation} {topic}" if operation and topic else operation
    if request.get("url") and span.namespace == "remote":
        url = str(request["url"])
        path = url.split("://", 1)[-1].partition("/")[2]
        method = request.get("method") or ""
        return HTTP, operation or f"{method} /{path}".strip()
    if "operation" in aws:
        return name, operation or aws["operation"]
    return None, operation


# Rendering for a terminal ----------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    return "…" if seconds is None else f"{seconds * 1000:.1f}"


def render_waterfall(trace: Trace, width: int = 110) -> str:
    """The trace as text: start offset and duration in ms, marks, indented names, and a bar."""
    total = trace.duration or 1e-9
    bar_width = max(10, width - 72)
    lines = [
        f"trace {trace.id}  {_ms(trace.duration)} ms  "
        f"{len(trace.segments)} segments, {sum(1 for _ in trace.spans())} entities  "
        f"services: {', '.join(trace.services) or '-'}",
        f"{'start ms':>9} {'dur ms':>8} {'':3} {'service / operation':<46} timeline",
    ]
    for row in trace.rows():
        span = row.span
        name = ("  " * row.depth + span.label)[:46]
        begin = int(row.offset / total * bar_width)
        length = max(1, round((span.duration or 0.0) / total * bar_width))
        bar = " " * min(begin, bar_width - 1) + ("#" if span.is_segment else "=") * length
        status = f" {span.http_status}" if span.http_status else ""
        if row.caller is not None:
            status += f" <- {row.caller.service}: {row.caller.label}"
        lines.append(
            f"{_ms(row.offset):>9} {_ms(span.duration):>8} {span.marks:3} {name:<46} "
            f"|{bar[:bar_width]:<{bar_width}}|{status}"
        )
        if span.cause:
            lines.append(f"{'':22}{'  ' * row.depth}  ! {span.cause}"[: width + 20])
    lines.append("marks: F fault (5xx, exception), E error (4xx), T throttled")
    return "\n".join(lines)


# Service map -----------------------------------------------------------------------------------


@dataclass
class Edge:
    source: str
    target: str
    calls: int = 0
    seconds: float = 0.0
    faults: int = 0


@dataclass
class ServiceMap:
    nodes: list[str]
    edges: list[Edge]


def service_map(trace: Trace) -> ServiceMap:
    """Services (segments) and the systems they call (remote subsegments), with call counts."""
    edges: dict[tuple[str, str], Edge] = {}
    nodes: dict[str, None] = {}

    def link(source: str, target: str, span: Span) -> None:
        if source == target:
            return
        nodes.setdefault(source, None)
        nodes.setdefault(target, None)
        edge = edges.setdefault((source, target), Edge(source, target))
        edge.calls += 1
        edge.seconds += span.duration or 0.0
        edge.faults += int(span.fault or span.error)

    def walk(span: Span, parent: Span | None) -> None:
        nodes.setdefault(span.service, None)
        if span.is_segment and parent is not None:
            link(parent.service, span.service, span)
        elif not span.is_segment and span.remote:
            link(span.service, _remote_node(span), span)
        for child in span.children:
            walk(child, span)

    for root in sorted(trace.roots, key=lambda s: s.start):
        walk(root, None)
    return ServiceMap(list(nodes), list(edges.values()))


def _remote_node(span: Span) -> str:
    """An HTTP callee is named by host and first path segment: locally every service shares one
    host (the gateway), and the path is what tells the provider from the others."""
    if span.remote != HTTP:
        return span.remote or span.name
    path = (span.operation or "").partition(" ")[2].strip("/")
    first = path.split("/", 1)[0]
    return f"{span.name}/{first}" if first else span.name
