"""The plain-text summary printed at the end of a run (and by `consim check`)."""

from __future__ import annotations

from typing import Any

from simulator.figures import warmup_note


def table(rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _mark(ok: bool) -> str:
    return "ok" if ok else "FAIL"


def latency_table(figures: dict[str, Any]) -> str:
    rows = [["latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"]]
    named = {"API POST /payments": figures["api_latency"]}
    named.update({f"end to end ({k})": v for k, v in sorted(figures["e2e_latency"].items())})
    for name, p in named.items():
        rows.append(
            [
                name,
                str(p["count"]),
                f"{p['p50_ms']:.1f}",
                f"{p['p90_ms']:.1f}",
                f"{p['p99_ms']:.1f}",
                f"{p['p99.9_ms']:.1f}",
                f"{p['max_ms']:.1f}",
            ]
        )
    return table(rows)


def checks_table(checks: list[dict[str, Any]]) -> str:
    rows = [["invariant", "checked", "result"]]
    for c in checks:
        detail = "held" if c["ok"] else c["detail"]
        result = f"{_mark(c['ok'])}: {detail}"
        rows.append(
            [c["title"], str(c["checked"]), result if len(result) < 110 else result[:107] + "..."]
        )
    return table(rows)


def slo_table(slos: list[dict[str, Any]]) -> str:
    rows = [["objective", "target", "measured", "result"]]
    rows += [[s["name"], s["target"], s["actual"], _mark(s["ok"])] for s in slos]
    return table(rows)


def render(run: dict[str, Any]) -> str:
    f = run["figures"]
    cats = f["categories"]
    rate = f.get("offered_rate", f.get("achieved_rate", 0))
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(f["http_statuses"].items()))
    head = (
        f"scenario {run['scenario']}  run {run['run_id']}\n"
        f"payments {f['payment_keys']} ({rate:.1f}/s offered), "
        f"sends {f['sends_planned']}: "
        f"accepted {cats['accepted']}, over limit {cats['insufficient-funds']}, "
        f"duplicate in flight {cats['in-flight']}, errors {cats['error']}, "
        f"dropped {cats['dropped']}, late {f['late']}; notifications {f['notifications']}; "
        f"drain {run.get('drain', {}).get('seconds', 0):.1f}s\n"
        f"HTTP statuses: {statuses}"
    )
    timeline = run.get("timeline") or []
    latency = "\n".join(part for part in (latency_table(f), warmup_note(f)) if part)
    lines = [head, "", latency, "", checks_table(run.get("checks", [])), ""]
    lines += [slo_table(run.get("slos", []))]
    if timeline:
        rows = [["at", "what", "result"]]
        rows += [[f"{h['at']:.1f}s", h["label"], h.get("error") or "ok"] for h in timeline]
        lines += ["", table(rows)]
    notes = list(run.get("notes") or [])
    refused = run.get("refused_notifications") or []
    if refused:
        notes.append(f"{len(refused)} notification(s) refused by our receivers: {refused[0]}")
    lines += [f"note: {note}" for note in notes]
    lines += ["", "RESULT: " + ("PASSED" if run.get("ok") else "FAILED")]
    return "\n".join(lines)
