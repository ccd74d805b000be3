"""The sweeper's settings: defaults, and the environment overriding them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from consim.services.redrive import RedrivePolicy

pytestmark = pytest.mark.unit


def test_defaults(monkeypatch):
    for name in ("PENDING_REDRIVE_AFTER_S", "PENDING_REDRIVE_INTERVAL_S", "PENDING_REDRIVE_BATCH"):
        monkeypatch.delenv(name, raising=False)
    assert RedrivePolicy.from_settings() == RedrivePolicy(
        after=timedelta(seconds=30), interval=timedelta(seconds=60), batch=100
    )


def test_the_environment_overrides_them(monkeypatch):
    monkeypatch.setenv("PENDING_REDRIVE_AFTER_S", "2.5")
    monkeypatch.setenv("PENDING_REDRIVE_INTERVAL_S", "600")
    monkeypatch.setenv("PENDING_REDRIVE_BATCH", "0")  # at least one per sweep
    assert RedrivePolicy.from_settings() == RedrivePolicy(
        after=timedelta(seconds=2.5), interval=timedelta(seconds=600), batch=1
    )
