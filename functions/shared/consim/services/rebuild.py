"""`python -m consim.services.rebuild`: rewrite the DynamoDB read models from the event store.

Safe while the projector runs: an item is only replaced by a fold at least as new as it.
"""

from __future__ import annotations

import logging
import sys

from consim.adapters.postgres_event_store import PostgresEventStore, open_pool
from consim.adapters.read_models import ReadModels
from consim.config import settings
from consim.services.projection import rebuild


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = settings()
    pool = open_pool(config.database_url)
    try:
        written = rebuild(PostgresEventStore(pool), ReadModels())
    finally:
        pool.close()
    print(
        f"rebuilt {written['accounts']} account and {written['payments']} payment read models "
        f"from {config.database_url.rsplit('@', 1)[-1]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
