"""The scenario's service level objectives, judged against the run's figures."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from simulator.scenario import Slo


@dataclass(frozen=True)
class SloResult:
    name: str
    target: str
    actual: str
    ok: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(slo: Slo, figures: dict[str, Any], drained: bool, pending: int) -> list[SloResult]:
    results = [
        SloResult("drained", "every accepted payment final", f"{pending} still pending", drained),
        SloResult(
            "errors",
            f"error rate <= {slo.max_error_rate:.2%}",
            f"{figures['error_rate']:.2%} ({figures['errors']})",
            figures["error_rate"] <= slo.max_error_rate,
        ),
        SloResult(
            "late sends",
            f"<= {slo.max_late_share:.2%} of sends",
            f"{figures['late_share']:.2%} ({figures['late']})",
            figures["late_share"] <= slo.max_late_share,
        ),
        SloResult(
            "dropped sends",
            f"<= {slo.max_dropped}",
            str(figures["dropped"]),
            figures["dropped"] <= slo.max_dropped,
        ),
    ]
    # Older run records have no count of redeliveries: judged as none.
    copies = figures.get("notifications_redelivered", 0)
    results.append(
        SloResult(
            "redelivered notifications",
            f"<= {slo.max_redelivered}",
            str(copies),
            copies <= slo.max_redelivered,
        )
    )
    keys = figures["payment_keys"] or 1
    accepted_share = figures["payments_accepted"] / keys
    if slo.min_accepted_share > 0:
        results.append(
            SloResult(
                "accepted",
                f">= {slo.min_accepted_share:.0%} of payments",
                f"{accepted_share:.1%}",
                accepted_share >= slo.min_accepted_share,
            )
        )
    if slo.api_p99_ms is not None:
        p99 = figures["api_latency"]["p99_ms"]
        results.append(
            SloResult(
                "API p99", f"<= {slo.api_p99_ms:g} ms", f"{p99:.0f} ms", p99 <= slo.api_p99_ms
            )
        )
    if slo.e2e_p99_ms is not None:
        for kind, latency in sorted(figures["e2e_latency"].items()):
            p99 = latency["p99_ms"]
            results.append(
                SloResult(
                    f"end-to-end p99 ({kind})",
                    f"<= {slo.e2e_p99_ms:g} ms",
                    f"{p99:.0f} ms",
                    p99 <= slo.e2e_p99_ms,
                )
            )
        if not figures["e2e_latency"]:
            results.append(
                SloResult("end-to-end p99", f"<= {slo.e2e_p99_ms:g} ms", "no notification", False)
            )
    return results
