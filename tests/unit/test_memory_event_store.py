import pytest
from consim.adapters.memory_event_store import InMemoryEventStore
from support.event_store_contract import EventStoreContract

pytestmark = pytest.mark.unit


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def store(self) -> InMemoryEventStore:
        return InMemoryEventStore()
