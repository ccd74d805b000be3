"""Logs, traces and metrics for every function: the one place the tracing library is named.

Use it like this in a handler module::

    from consim.observability import annotate, logger, metrics, observed, tracer

    @observed                       # logger context + "## handler" subsegment + EMF flush
    def handler(event, context):
        ...

    annotate(payment_id=..., account_id=...)   # X-Ray annotations and log keys
    count(PAYMENTS_ACCEPTED)                     # EMF, namespace ConcurrencySimulator
    with sql_subsegment("append"):               # a Postgres call as a remote subsegment
        ...
    with kafka_subsegment("produce", topic):
        headers = [("X-Amzn-Trace-Id", kafka_trace_header().encode())]
    current_trace_id()                           # "1-..." for an event's metadata

In a Kafka consumer, wrap the work of each record::

    with continue_trace(record_header_value):
        ...

How a trace crosses Kafka
-------------------------
Lambda starts a fresh trace for each invocation of a Kafka event source mapping, and the
X-Ray SDK inside Lambda only ever sees a read-only *facade* segment built from
``_X_AMZN_TRACE_ID``. A batch holds records of many payments, so the invocation's trace cannot
be the payment's trace. For each record, ``continue_trace`` therefore:

1. makes a segment of its own (name = the service, origin ``AWS::Lambda::Function``) in the
   record's trace, whose parent is the producer's Kafka subsegment named in the header;
2. points the SDK's context at that segment while the block runs, so every subsegment opened
   inside (boto3, HTTP, SQL, Kafka) lands in the payment's trace under it (the SDK's Lambda
   context is subclassed for this; the invocation's open subsegments, the ``## handler`` one,
   are put back afterwards), and sets ``_X_AMZN_TRACE_ID`` to the record's trace for the
   block too, so code that reads the variable (the event store's metadata, the log's
   ``xray_trace_id``) sees the payment's trace, even with tracing disabled;
3. sends the segment when the block ends, with the invocation's trace and segment ids under
   the ``invocation`` metadata (and annotation ``invocation_trace_id``) as the link back to the
   Lambda invocation that ran it.

Records are processed one at a time on the handler's thread (the context is thread-local).

What becomes a subsegment by itself
-----------------------------------
boto3 (DynamoDB) and HTTP (urllib3, requests, httpx) through the X-Ray SDK's patchers, which
also put the trace header on outgoing HTTP requests. Postgres and Kafka are instrumented here:

- aws-xray-sdk's psycopg 3 patcher wraps ``psycopg.connect`` and the pool's ``_connect`` in a
  proxy and records only ``cursor().execute``, so ``connection.execute`` (which makes its cursor
  inside the unproxied connection) stays invisible, and pooled connections get proxied. Instead,
  ``psycopg.Cursor.execute``/``executemany`` are wrapped: every statement, whichever way it is
  issued, becomes a ``Postgres`` subsegment named by its verb and table (``INSERT events``)
  with the statement text (placeholders only, never values) as ``sql.sanitized_query``
  (``CONSIM_TRACE_SQL_STATEMENTS=false`` turns this off and keeps the named steps below).
- kafka-python has no patcher: ``KafkaProducer.send`` and ``flush`` become ``Kafka``
  subsegments (``send payment-events``, ``flush``; the flush is where the broker's answer is
  awaited).

``sql_subsegment(operation)`` and ``kafka_subsegment(operation, topic)`` group such calls under
a named step (``append``, ``publish``) where that reads better in the waterfall.

Outside Lambda (tests, tools) Powertools disables tracing and every helper here is a no-op;
``POWERTOOLS_TRACE_DISABLED=true`` does the same inside Lambda.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_xray_sdk import global_sdk_config
from aws_xray_sdk.core import xray_recorder
from aws_xray_sdk.core.lambda_launcher import LambdaContext
from aws_xray_sdk.core.models.facade_segment import FacadeSegment
from aws_xray_sdk.core.models.segment import Segment
from aws_xray_sdk.core.models.trace_header import TraceHeader

from consim.config import settings

__all__ = [
    "METRICS_NAMESPACE",
    "NOTIFICATIONS_FAILED",
    "NOTIFICATIONS_SENT",
    "PAYMENTS_ACCEPTED",
    "PAYMENTS_AUTHORIZED",
    "PAYMENTS_DECLINED",
    "PAYMENTS_FAILED",
    "PAYMENTS_REJECTED",
    "PROVIDER_LATENCY",
    "RESERVATION_CONFLICTS",
    "TRACE_HEADER",
    "MetricUnit",
    "annotate",
    "continue_trace",
    "count",
    "current_trace_header",
    "current_trace_id",
    "kafka_subsegment",
    "kafka_trace_header",
    "latency_ms",
    "logger",
    "metrics",
    "observed",
    "remote_subsegment",
    "sql_subsegment",
    "timed",
    "tracer",
]

TRACE_HEADER = "X-Amzn-Trace-Id"
METRICS_NAMESPACE = "ConcurrencySimulator"

PAYMENTS_ACCEPTED = "PaymentsAccepted"
PAYMENTS_REJECTED = "PaymentsRejected"
PAYMENTS_AUTHORIZED = "PaymentsAuthorized"
PAYMENTS_DECLINED = "PaymentsDeclined"
PAYMENTS_FAILED = "PaymentsFailed"
RESERVATION_CONFLICTS = "ReservationConflicts"
PROVIDER_LATENCY = "ProviderLatency"
NOTIFICATIONS_SENT = "NotificationsSent"
NOTIFICATIONS_FAILED = "NotificationsFailed"

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "consim"
_LAMBDA_TRACE_ENV = "_X_AMZN_TRACE_ID"

# Libraries whose calls become subsegments by themselves. botocore covers boto3 (DynamoDB);
# httplib covers urllib3 and so requests too, without doubling botocore's calls (the SDK skips
# botocore's connections). psycopg is left out on purpose, see the module docstring.
_PATCHED = ("botocore", "requests", "httplib", "httpx")


class _RecordAwareLambdaContext(LambdaContext):
    """The SDK's Lambda context, which can be pointed at another trace for a while.

    The stock context rebuilds its facade from ``_X_AMZN_TRACE_ID`` whenever the trace id
    differs; with an override set, the override's header wins instead.
    """

    def __init__(self) -> None:
        super().__init__()
        self._override = threading.local()

    def push(self, header: TraceHeader) -> tuple[Any, list[Any]]:
        saved = (getattr(self._local, "segment", None), list(getattr(self._local, "entities", [])))
        self._override.header = header
        self._initialize_context(header)
        return saved

    def pop(self, saved: tuple[Any, list[Any]]) -> None:
        self._override.header = None
        segment, entities = saved
        self._local.segment = segment
        self._local.entities = entities

    def _refresh_context(self) -> None:
        header = getattr(self._override, "header", None)
        if header is None:
            self._refresh_from_environment()
            return
        segment = getattr(self._local, "segment", None)
        if segment is None or segment.trace_id != header.root:
            self._initialize_context(header)

    def _refresh_from_environment(self) -> None:
        # The stock context keeps its facade while the trace id stays the same. A function
        # called twice in one trace (the provider, by the processor) gets a new parent each
        # time, and the second invocation's subsegments would hang under the first's segment.
        #
        # The SDK asks for the current entity several times per subsegment; parsing the header
        # each time was most of a subsegment's cost, so an unchanged variable returns at once.
        raw = os.environ.get(_LAMBDA_TRACE_ENV)
        segment = getattr(self._local, "segment", None)
        if segment is not None and raw is not None and raw == getattr(self._local, "raw", None):
            return
        header = TraceHeader.from_header_str(raw)
        if (
            isinstance(segment, FacadeSegment)
            and header.root == segment.trace_id
            and header.parent
            and header.parent != segment.id
            and global_sdk_config.sdk_enabled()
        ):
            self._initialize_context(header)
        else:
            super()._refresh_context()
        self._local.raw = raw


def _in_lambda() -> bool:
    return bool(os.environ.get("LAMBDA_TASK_ROOT"))


def _installed(module: str) -> bool:
    return importlib.util.find_spec("http.client" if module == "httplib" else module) is not None


def _configure_recorder() -> None:
    options: dict[str, Any] = {
        "daemon_address": settings().xray_daemon_address,
        "context_missing": "IGNORE_ERROR",
    }
    if _in_lambda():
        options["context"] = _RecordAwareLambdaContext()
    xray_recorder.configure(**options)


_configure_recorder()

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE, patch_modules=[name for name in _PATCHED if _installed(name)])
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or METRICS_NAMESPACE)
# `observed` flushes after every invocation, and many add no metric of their own: that is
# expected here, not worth a warning on stderr each time.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

_SQL_TARGET = re.compile(r"\b(?:INTO|FROM|UPDATE|TABLE)\s+([\w.\"]+)", re.IGNORECASE)


def _sql_text(query: Any, cursor: Any) -> str:
    if isinstance(query, bytes):
        return query.decode("utf-8", "replace")
    if isinstance(query, str):
        return query
    try:  # psycopg.sql.Composed and friends
        return str(query.as_string(cursor))
    except Exception:
        return str(query)


def _sql_operation(text: str) -> str:
    words = text.split(None, 1)
    if not words:
        return "ping"  # psycopg_pool's check_connection runs an empty statement
    verb = words[0].upper()
    target = _SQL_TARGET.search(text)
    return f"{verb} {target.group(1).replace(chr(34), '')}" if target else verb


def _traced_sql(wrapped: Callable[..., Any], cursor: Any, args: Any, kwargs: Any) -> Any:
    if not _in_traced_call():
        return wrapped(*args, **kwargs)
    text = _sql_text(args[0] if args else kwargs.get("query", ""), cursor)
    with remote_subsegment("Postgres", _sql_operation(text)) as subsegment:
        if subsegment is not None:
            subsegment.set_sql(
                {
                    "database_type": "PostgreSQL",
                    "driver_version": "psycopg 3",
                    "sanitized_query": " ".join(text.split())[:1000],
                }
            )
        return wrapped(*args, **kwargs)


def _traced_kafka_send(wrapped: Callable[..., Any], producer: Any, args: Any, kwargs: Any) -> Any:
    if not _in_traced_call():
        return wrapped(*args, **kwargs)
    topic = str(args[0] if args else kwargs.get("topic", ""))
    with remote_subsegment("Kafka", f"send {topic}", topic=topic):
        return wrapped(*args, **kwargs)


def _traced_kafka_flush(wrapped: Callable[..., Any], producer: Any, args: Any, kwargs: Any) -> Any:
    if not _in_traced_call():
        return wrapped(*args, **kwargs)
    with remote_subsegment("Kafka", "flush"):
        return wrapped(*args, **kwargs)


def _inside_remote_call() -> bool:
    """Already inside a recorded call (botocore's, requests', a retry of our own): the outer
    subsegment tells the story; a second one for the same request would only double it."""
    entity = xray_recorder.get_trace_entity()
    return getattr(entity, "namespace", None) in ("aws", "remote")


def _traced_urlopen(wrapped: Callable[..., Any], pool: Any, args: Any, kwargs: Any) -> Any:
    if not _in_traced_call() or _inside_remote_call():
        return wrapped(*args, **kwargs)
    method = args[0] if len(args) > 0 else kwargs.get("method")
    url = args[1] if len(args) > 1 else kwargs.get("url")
    with xray_recorder.in_subsegment(str(pool.host), namespace="remote") as subsegment:
        if subsegment is None or not subsegment.sampled:
            return wrapped(*args, **kwargs)
        subsegment.put_http_meta("method", str(method))
        subsegment.put_http_meta("url", f"{pool.scheme}://{pool.host}:{pool.port}{url}")
        # The callee continues this trace, under this subsegment (as the SDK does for requests).
        headers = dict((args[3] if len(args) > 3 else kwargs.get("headers")) or pool.headers or {})
        headers[TRACE_HEADER] = f"Root={subsegment.trace_id};Parent={subsegment.id};Sampled=1"
        if len(args) > 3:
            args = (*args[:3], headers, *args[4:])
        else:
            kwargs["headers"] = headers
        response = wrapped(*args, **kwargs)
        subsegment.put_http_meta("status", getattr(response, "status", None))
        return response


def _statements_traced() -> bool:
    """CONSIM_TRACE_SQL_STATEMENTS=false keeps only the named ``sql_subsegment`` steps: one
    subsegment per statement is the detail that costs most (see benchmarks/tracing_cost.py)."""
    return os.environ.get("CONSIM_TRACE_SQL_STATEMENTS", "true").lower() not in ("0", "false", "no")


def _instrument() -> None:
    """Wrap psycopg and kafka-python once per process, when tracing is on (see the docstring)."""
    if tracer.disabled or getattr(_instrument, "done", False):
        return
    import wrapt

    if _installed("psycopg") and _statements_traced():
        wrapt.wrap_function_wrapper("psycopg", "Cursor.execute", _traced_sql)
        wrapt.wrap_function_wrapper("psycopg", "Cursor.executemany", _traced_sql)
    if _installed("urllib3"):
        # urllib3 2 sends through its own HTTPConnection.request, which the SDK's httplib
        # patcher does not see: calls made with urllib3 directly would go unrecorded.
        wrapt.wrap_function_wrapper(
            "urllib3.connectionpool", "HTTPConnectionPool.urlopen", _traced_urlopen
        )
    if _installed("kafka"):
        wrapt.wrap_function_wrapper("kafka", "KafkaProducer.send", _traced_kafka_send)
        wrapt.wrap_function_wrapper("kafka", "KafkaProducer.flush", _traced_kafka_flush)
    _instrument.done = True  # type: ignore[attr-defined]


def _tracing_on() -> bool:
    return global_sdk_config.sdk_enabled() and not tracer.disabled


def _in_traced_call() -> bool:
    """Tracing is on and there is a trace to add to: in Lambda, only during an invocation (SQL
    run while the module is imported, say, has no segment and would only make the SDK warn)."""
    if not _tracing_on():
        return False
    return not _in_lambda() or bool(os.environ.get(_LAMBDA_TRACE_ENV))


def observed(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Lambda handler: log context (cold start, request id), a handler subsegment, EMF."""

    # A plain function in front, so that callables without a __name__ (a Chalice app) work too.
    def wrapped(event: Any, context: Any) -> Any:
        return handler(event, context)

    # Chalice's ConvertToMiddleware hands over a function named after this decorator: the
    # service's name reads better on the "## ..." subsegment.
    name = getattr(handler, "__name__", None)
    wrapped.__name__ = name if name and name != "observed" else SERVICE
    wrapped.__doc__ = getattr(handler, "__doc__", None)

    traced = tracer.capture_lambda_handler(wrapped)
    logged = logger.inject_lambda_context(traced, clear_state=True)
    return metrics.log_metrics(logged, capture_cold_start_metric=True)


# Annotations and log keys --------------------------------------------------------------------

_record_segment = threading.local()


def _annotatable() -> Any:
    """The entity an annotation can go on now: never the read-only Lambda facade."""
    entity = xray_recorder.get_trace_entity()
    if entity is None or isinstance(entity, FacadeSegment) or not entity.sampled:
        return getattr(_record_segment, "segment", None)
    return entity


def annotate(**values: str | int | float | bool | None) -> None:
    """Annotate the current trace entity (searchable in X-Ray) and add the keys to every log."""
    present = {key: value for key, value in values.items() if value is not None}
    logger.append_keys(**present)
    if not _tracing_on():
        return
    entity = _annotatable()
    segment = getattr(_record_segment, "segment", None)
    for key, value in present.items():
        if entity is not None:
            entity.put_annotation(key, value)
        # The record's own segment carries them too: that is the node a search lands on.
        if segment is not None and segment is not entity:
            segment.put_annotation(key, value)


# Trace headers -------------------------------------------------------------------------------


def current_trace_id() -> str | None:
    """The X-Ray trace id ("1-...") the current work belongs to, or None when untraced."""
    if _tracing_on():
        entity = xray_recorder.get_trace_entity()
        if entity is not None and getattr(entity, "trace_id", None):
            return entity.trace_id
    header = TraceHeader.from_header_str(os.environ.get(_LAMBDA_TRACE_ENV))
    return header.root


def current_trace_header() -> str | None:
    """Root, parent (the current segment or subsegment) and sampling, as one header string."""
    if _tracing_on():
        entity = xray_recorder.get_trace_entity()
        if entity is not None and getattr(entity, "trace_id", None):
            sampled = 1 if entity.sampled else 0
            return f"Root={entity.trace_id};Parent={entity.id};Sampled={sampled}"
    return os.environ.get(_LAMBDA_TRACE_ENV) or None


def kafka_trace_header() -> str | None:
    """The value for a produced record's ``X-Amzn-Trace-Id`` header (call it inside the
    produce subsegment, so the consumer's segment hangs under that subsegment)."""
    return current_trace_header()


@contextlib.contextmanager
def continue_trace(header: str | bytes | None) -> Iterator[str | None]:
    """Run the block in the trace named by a Kafka record's header; yields that trace id."""
    if isinstance(header, bytes):
        header = header.decode("utf-8", "replace")
    parsed = TraceHeader.from_header_str(header)
    if not parsed.root:
        yield current_trace_id()
        return

    logger.append_keys(trace_id=parsed.root)
    try:
        if not _tracing_on() or parsed.sampled == 0:
            with _trace_env(header):
                yield parsed.root
            return
        with _segment_in_trace(parsed):
            yield parsed.root
    finally:
        logger.remove_keys(["trace_id"])


@contextlib.contextmanager
def _trace_env(header: str | None) -> Iterator[None]:
    saved = os.environ.get(_LAMBDA_TRACE_ENV)
    if header:
        os.environ[_LAMBDA_TRACE_ENV] = header
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(_LAMBDA_TRACE_ENV, None)
        else:
            os.environ[_LAMBDA_TRACE_ENV] = saved


def _header_for(root: str, parent: str) -> str:
    return f"Root={root};Parent={parent};Sampled=1"


@contextlib.contextmanager
def _segment_in_trace(parsed: TraceHeader) -> Iterator[None]:
    context = xray_recorder.context
    if not isinstance(context, _RecordAwareLambdaContext):
        # Not under Lambda: the recorder may own segments itself.
        segment = xray_recorder.begin_segment(
            name=SERVICE, traceid=parsed.root, parent_id=parsed.parent, sampling=1
        )
        try:
            with _trace_env(_header_for(parsed.root, segment.id)):
                yield
        finally:
            xray_recorder.end_segment()
        return

    invocation = context.get_trace_entity()
    segment = Segment(name=SERVICE, traceid=parsed.root, parent_id=parsed.parent, sampled=True)
    segment.origin = "AWS::Lambda::Function"
    if invocation is not None and getattr(invocation, "trace_id", None):
        # The link back: the invocation's function segment, and the entity open in it now.
        function_segment = getattr(invocation, "parent_segment", None) or invocation
        link = {"trace_id": invocation.trace_id, "segment_id": function_segment.id}
        if invocation is not function_segment:
            link["subsegment_id"] = invocation.id
        segment.put_metadata("invocation", link, "consim")
        segment.put_annotation("invocation_trace_id", invocation.trace_id)

    saved = context.push(TraceHeader(root=parsed.root, parent=segment.id, sampled=1))
    _record_segment.segment = segment
    try:
        with _trace_env(_header_for(parsed.root, segment.id)):
            yield
    except Exception as error:
        segment.add_fault_flag()
        segment.add_exception(error, [], remote=False)
        raise
    finally:
        _record_segment.segment = None
        context.pop(saved)
        segment.close()
        xray_recorder.emitter.send_entity(segment)


# Remote calls without an auto-patcher --------------------------------------------------------


@contextlib.contextmanager
def remote_subsegment(name: str, operation: str, **metadata: Any) -> Iterator[Any]:
    """A subsegment for a call to another system, named like X-Ray names remote nodes."""
    if not _in_traced_call():
        yield None
        return
    with xray_recorder.in_subsegment(name, namespace="remote") as subsegment:
        if subsegment is not None:
            subsegment.put_annotation("operation", operation)
            if metadata:
                subsegment.put_metadata("call", metadata, "consim")
        yield subsegment


@contextlib.contextmanager
def sql_subsegment(operation: str, statement: str | None = None) -> Iterator[Any]:
    """A Postgres call (``append``, ``load_stream``, ...) as a subsegment with SQL metadata."""
    with remote_subsegment("Postgres", operation) as subsegment:
        if subsegment is not None:
            sql: dict[str, Any] = {"database_type": "PostgreSQL", "driver_version": "psycopg 3"}
            if statement:
                sql["sanitized_query"] = statement
            subsegment.set_sql(sql)
        yield subsegment


@contextlib.contextmanager
def kafka_subsegment(operation: str, topic: str) -> Iterator[Any]:
    """A Kafka produce (or other broker call) as a subsegment."""
    with remote_subsegment("Kafka", operation, topic=topic) as subsegment:
        if subsegment is not None:
            subsegment.put_annotation("topic", topic)
        yield subsegment


# Metrics -------------------------------------------------------------------------------------


def count(name: str, value: float = 1) -> None:
    """Add to a counting metric (flushed as EMF when the handler returns)."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def latency_ms(name: str, milliseconds: float) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=milliseconds)


@contextlib.contextmanager
def timed(name: str) -> Iterator[None]:
    """Record the block's wall time in milliseconds under ``name`` (e.g. PROVIDER_LATENCY)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        latency_ms(name, (time.perf_counter() - started) * 1000)


_instrument()
