import pytest
from consim.adapters.postgres_event_store import PostgresEventStore, open_pool
from support.event_store_contract import EventStoreContract
from support.postgres import migrated_url

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pool():
    pool = open_pool(migrated_url(), max_size=12)
    yield pool
    pool.close()


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, pool) -> PostgresEventStore:
        return PostgresEventStore(pool)
