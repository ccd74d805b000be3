"""Opening accounts and reading them back from the event store (read your writes)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from consim.adapters.event_store import ConcurrencyConflict, EventStore, RecordedEvent
from consim.domain.account import Account, account_stream
from consim.domain.errors import AccountAlreadyExists, AccountNotFound, InvalidRequest

MAX_ACCOUNT_ID = 64
STATEMENT_ENTRIES = 10


@dataclass(frozen=True)
class AccountView:
    account: Account
    opened_at: datetime
    events: list[RecordedEvent]


def _require_account_id(account_id: object) -> str:
    if account_id is None:
        return str(uuid.uuid4())
    valid = isinstance(account_id, str) and 0 < len(account_id) <= MAX_ACCOUNT_ID
    if not valid or not account_id.replace("-", "").replace("_", "").isalnum():
        raise InvalidRequest(
            f"id must be 1 to {MAX_ACCOUNT_ID} letters, digits, '-' or '_', got {account_id!r}"
        )
    return account_id


def open_account(
    store: EventStore,
    client_id: str,
    currency: object,
    limit: object,
    balance: object = 0,
    account_id: object = None,
) -> AccountView:
    account_id = _require_account_id(account_id)
    opened = Account.open(account_id, client_id, currency, limit, balance)
    try:
        recorded = store.append(account_stream(account_id), 0, [opened], {"client_id": client_id})
    except ConcurrencyConflict as exc:
        raise AccountAlreadyExists(account_id) from exc
    return AccountView(Account.fold(account_id, [opened]), recorded[0].recorded_at, recorded)


def load_account(store: EventStore, client_id: str, account_id: str) -> AccountView:
    """The account as of its last event; another client's account does not exist for this one."""
    events = store.read_stream(account_stream(account_id))
    account = Account.fold(account_id, [e.event for e in events])
    if not account.exists or account.client_id != client_id:
        raise AccountNotFound(account_id)
    return AccountView(account, events[0].recorded_at, events)


def statement_entries(view: AccountView) -> list[RecordedEvent]:
    """The last entries of the account, newest first."""
    return list(reversed(view.events[-STATEMENT_ENTRIES:]))
