"""The live page in Debian's headless Chromium: a payment made on the page shows `authorized`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from consim.config import REPO_ROOT, settings

pytestmark = pytest.mark.e2e

BROWSER_DIR = REPO_ROOT / "tests" / "browser"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))


def _install_tools() -> None:
    """playwright-core from the lockfile (it downloads no browser); Chromium from Debian."""
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=BROWSER_DIR,
            check=True,
            timeout=600,
        )
    if not CHROMIUM.exists():
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.fail(
                f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)"
            )
        subprocess.run(["apt-get", "update", "-q"], check=True, timeout=900)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, timeout=1800)


def test_a_payment_made_on_the_page_shows_authorized():
    _install_tools()
    gateway = os.environ.get("API_URL") or settings().api_url

    run = subprocess.run(
        ["node", "live_page.mjs", gateway + "/", os.environ["API_KEY"], "90000"],
        cwd=BROWSER_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )

    lines = run.stdout.strip().splitlines()
    assert lines, run.stderr[-3000:]
    result = json.loads(lines[-1])
    assert result.get("status") == "authorized", result
    assert result["url"].endswith("/_live/")
    assert "pending" in result["history"] and "authorized" in result["history"]
    assert result["page_errors"] == []
    assert run.returncode == 0
