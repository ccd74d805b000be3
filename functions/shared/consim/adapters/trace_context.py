"""The X-Ray trace an event is recorded under.

Lambda (and the emulator) put the trace header of the current invocation in `_X_AMZN_TRACE_ID`,
e.g. `Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`. Keeping it
in each event's metadata is how a payment's trace is found later, and how the trace continues
across Kafka (the header travels with the record).
"""

from __future__ import annotations

from consim import observability


def current_trace_header() -> str | None:
    """The current segment's header when tracing, else the invocation's `_X_AMZN_TRACE_ID`."""
    return observability.current_trace_header()


def trace_id_of(header: str | None) -> str | None:
    """The Root id of a trace header (`1-...`), or None if the header has none."""
    if not header:
        return None
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == "Root" and value:
            return value
    return None


def trace_metadata(header: str | None = None) -> dict[str, str]:
    """`trace_id` and `trace_header` for an event's metadata; empty outside a traced call."""
    header = header or current_trace_header()
    trace_id = trace_id_of(header)
    if not header or not trace_id:
        return {}
    return {"trace_id": trace_id, "trace_header": header}
