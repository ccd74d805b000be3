"""A short real run through `consim run` against the running stack: it must exit 0.

Latency objectives are lifted for this run (a shared test machine says nothing about them);
every invariant, no errors, no dropped sends and a complete drain still have to hold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_a_short_steady_run_holds_every_invariant(tmp_path: Path) -> None:
    env = {**os.environ, "CONSIM_REPORTS_DIR": str(tmp_path)}
    command = [
        sys.executable,
        "-m",
        "simulator.cli",
        "run",
        "steady",
        "--duration",
        "10",
        "--rate",
        "3",
        "--accounts",
        "4",
        "--quiet",
        "--set",
        "duplicates.share=0.2",
        "--set",
        "slo.api_p99_ms=null",
        "--set",
        "slo.e2e_p99_ms=null",
        "--set",
        "slo.max_late_share=1.0",
    ]

    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=280)

    assert result.returncode == 0, result.stdout + result.stderr
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    record = json.loads((run_dir / "run.json").read_text())
    assert [c["key"] for c in record["checks"] if not c["ok"]] == []
    assert record["figures"]["payments_accepted"] >= 20
    assert record["figures"]["notifications"] > 0
    assert (run_dir / "report.html").read_text().count("<svg") == 4
    assert "RESULT: PASSED" in result.stdout
