"""Every test says which kind it is, so `make test-unit`, `test-integration` and `test-e2e`
together run all of them: a test with no kind (or two) stops the collection, named."""

from __future__ import annotations

import pytest

KINDS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    unkinded = [
        item.nodeid
        for item in items
        if sum(1 for kind in KINDS if item.get_closest_marker(kind)) != 1
    ]
    if unkinded:
        raise pytest.UsageError(
            f"tests need exactly one of the markers {', '.join(KINDS)}: " + ", ".join(unkinded)
        )
