"""The invariants a run must leave true, each a pure function over plain data.

The evidence is gathered from the system after the run (event store, DynamoDB, the provider's
ledger, Kafka, the notifications our receivers got) and handed here as dicts and lists, so each
check can be tested on hand-made good and broken data. The simulator folds the streams itself,
with its own small fold, rather than trusting the system's code to judge the system.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

FINAL_TYPES = {
    "PaymentAuthorized": "authorized",
    "PaymentDeclined": "declined",
    "PaymentFailed": "failed",
}
STATUS_OF = {"PaymentRequested": "pending", **FINAL_TYPES}
MAX_OFFENDERS = 20


@dataclass
class Evidence:
    """Everything the checks look at; all plain data so it serialises into the run folder."""

    events: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    read_payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    read_accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    api_accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # provider -> {"count", "amount"} and, when the ledger lists its charges, "charges":
    # [{"payment_id", "amount"}]; "scope" says whether the figures cover this run or everything.
    provider_ledger: dict[str, dict[str, Any]] = field(default_factory=dict)
    # provider -> {"count", "amount"} of PaymentAuthorized over the whole store (scope "all").
    recorded_all: dict[str, dict[str, int]] = field(default_factory=dict)
    kafka_event_ids: list[str] | None = None
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    # source ("event-store", "read-models") -> why it could not be read; its checks then fail.
    unreadable: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Evidence:
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class CheckResult:
    key: str
    title: str
    ok: bool
    detail: str
    offenders: tuple[str, ...] = ()
    checked: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "ok": self.ok,
            "detail": self.detail,
            "offenders": list(self.offenders),
            "checked": self.checked,
        }


def _result(key: str, title: str, checked: int, problems: list[tuple[str, str]]) -> CheckResult:
    """problems: (offending id, what is wrong with it)."""
    if not problems:
        return CheckResult(key, title, True, f"{checked} checked", (), checked)
    shown = "; ".join(f"{oid}: {why}" for oid, why in problems[:MAX_OFFENDERS])
    more = f" (+{len(problems) - MAX_OFFENDERS} more)" if len(problems) > MAX_OFFENDERS else ""
    offenders = tuple(dict.fromkeys(oid for oid, _ in problems))
    return CheckResult(
        key, title, False, f"{len(problems)} problem(s): {shown}{more}", offenders, checked
    )


# -- folds -------------------------------------------------------------------------------------


def streams(events: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Events grouped by stream, in version order."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        grouped[event["stream_id"]].append(event)
    for stream in grouped.values():
        stream.sort(key=lambda e: e["version"])
    return dict(grouped)


def payment_id_of(stream_id: str) -> str | None:
    return stream_id[len("payment-") :] if stream_id.startswith("payment-") else None


def account_id_of(stream_id: str) -> str | None:
    return stream_id[len("account-") :] if stream_id.startswith("account-") else None


def fold_payment(stream: list[dict[str, Any]]) -> dict[str, Any]:
    state: dict[str, Any] = {"status": None, "version": 0, "finals": 0}
    for event in stream:
        data = event.get("data") or {}
        kind = event["type"]
        if kind == "PaymentRequested":
            state.update(
                id=data.get("payment_id"),
                account_id=data.get("account_id"),
                amount=data.get("amount"),
                currency=data.get("currency"),
                idempotency_key=data.get("idempotency_key"),
            )
        if kind in FINAL_TYPES:
            state["finals"] += 1
            if data.get("provider"):
                state["provider"] = data["provider"]
        if kind in STATUS_OF:
            state["status"] = STATUS_OF[kind]
        state["version"] = event["version"]
    return state


@dataclass
class AccountFold:
    opening_balance: int = 0
    limit: int = 0
    balance: int = 0
    reserved: int = 0
    captured: int = 0
    version: int = 0
    breaches: list[str] = field(default_factory=list)
    settled: Counter[str] = field(default_factory=Counter)
    reservations: dict[str, int] = field(default_factory=dict)


def fold_account(stream: list[dict[str, Any]]) -> AccountFold:
    """Fold an account stream, noting every step at which it was over its limit."""
    fold = AccountFold()
    for event in stream:
        data = event.get("data") or {}
        kind = event["type"]
        amount = int(data.get("amount") or 0)
        if kind == "AccountOpened":
            fold.opening_balance = fold.balance = int(data.get("balance") or 0)
            fold.limit = int(data.get("limit") or 0)
        elif kind == "FundsReserved":
            fold.reserved += amount
            fold.reservations[data.get("payment_id")] = amount
        elif kind == "FundsCaptured":
            fold.reserved -= amount
            fold.balance -= amount
            fold.captured += amount
            fold.settled[data.get("payment_id")] += 1
        elif kind == "FundsReleased":
            fold.reserved -= amount
            fold.settled[data.get("payment_id")] += 1
        fold.version = event["version"]
        available = fold.balance + fold.limit - fold.reserved
        if available < 0 or fold.reserved < 0:
            fold.breaches.append(
                f"v{fold.version} {kind}: available {available}, reserved {fold.reserved}"
            )
    return fold


def _payments(evidence: Evidence) -> dict[str, dict[str, Any]]:
    return {
        pid: fold_payment(stream)
        for sid, stream in streams(evidence.events).items()
        if (pid := payment_id_of(sid)) is not None
    }


def _accounts(evidence: Evidence) -> dict[str, AccountFold]:
    return {
        aid: fold_account(stream)
        for sid, stream in streams(evidence.events).items()
        if (aid := account_id_of(sid)) is not None
    }


def _accepted_ids(evidence: Evidence) -> set[str]:
    return {
        o["payment_id"]
        for o in evidence.outcomes
        if o.get("status") in (200, 201) and o.get("payment_id")
    }


# -- the checks --------------------------------------------------------------------------------


def one_final_event(evidence: Evidence) -> CheckResult:
    """1. Every accepted payment has exactly one final event."""
    payments = _payments(evidence)
    ids = _accepted_ids(evidence) | set(payments)
    problems = []
    for pid in sorted(ids):
        payment = payments.get(pid)
        if payment is None:
            problems.append((pid, "accepted (201) but absent from the event store"))
        elif payment["finals"] != 1:
            problems.append((pid, f"{payment['finals']} final events"))
    return _result(
        "final", "every accepted payment has exactly one final event", len(ids), problems
    )


def within_limits(evidence: Evidence) -> CheckResult:
    """2. No account ever passed its limit; balance = opening - captured; reservations settle."""
    accounts = _accounts(evidence)
    payments = _payments(evidence)
    authorized_by_account: dict[str, int] = defaultdict(int)
    for payment in payments.values():
        if payment["status"] == "authorized":
            authorized_by_account[payment.get("account_id")] += int(payment.get("amount") or 0)

    problems = []
    for aid, fold in sorted(accounts.items()):
        for breach in fold.breaches:
            problems.append((aid, f"over its limit at {breach}"))
        expected = fold.opening_balance - authorized_by_account.get(aid, 0)
        if fold.balance != expected:
            problems.append(
                (
                    aid,
                    f"balance {fold.balance} != opening {fold.opening_balance} - "
                    f"authorized {authorized_by_account.get(aid, 0)}",
                )
            )
        api = evidence.api_accounts.get(aid)
        # The API was asked before the store was read: compare the same version only.
        same = api is not None and int(api.get("version", fold.version)) == fold.version
        if same and "balance" in api and int(api["balance"]) != fold.balance:
            problems.append(
                (aid, f"the API says balance {api['balance']}, the fold {fold.balance}")
            )
        for pid in fold.reservations:
            payment = payments.get(pid)
            final = payment is not None and payment["status"] not in (None, "pending")
            if final and fold.settled[pid] != 1:
                problems.append((pid, f"reservation settled {fold.settled[pid]} times"))
    return _result(
        "limits",
        "no account passed its limit; balance = opening - captured",
        len(accounts),
        problems,
    )


def one_payment_per_key(evidence: Evidence) -> CheckResult:
    """3. Requests that shared an Idempotency-Key created one payment."""
    answered: dict[str, set[str]] = defaultdict(set)
    for outcome in evidence.outcomes:
        if outcome.get("status") in (200, 201) and outcome.get("payment_id"):
            answered[outcome["idempotency_key"]].add(outcome["payment_id"])
    recorded: dict[str, set[str]] = defaultdict(set)
    for pid, payment in _payments(evidence).items():
        if payment.get("idempotency_key"):
            recorded[payment["idempotency_key"]].add(pid)

    keys = {o["idempotency_key"] for o in evidence.outcomes} | set(recorded)
    problems = []
    for key in sorted(keys):
        ids = answered.get(key, set()) | recorded.get(key, set())
        if len(ids) > 1:
            problems.append((key, f"{len(ids)} payments: {', '.join(sorted(ids))}"))
    return _result(
        "idempotency",
        "requests sharing an Idempotency-Key created one payment",
        len(keys),
        problems,
    )


_PAYMENT_FIELDS = ("status", "amount", "account_id", "currency", "version", "provider")
_PAYMENT_FIELDS = (*_PAYMENT_FIELDS, "idempotency_key")
_ACCOUNT_FIELDS = ("balance", "reserved", "captured", "available", "limit", "version")


def _differences(expected: dict[str, Any], item: dict[str, Any], fields: tuple[str, ...]) -> str:
    diffs = []
    for name in fields:
        present = name in item and expected.get(name) is not None
        if present and str(item[name]) != str(expected[name]):
            diffs.append(f"{name} {item[name]!r} != {expected[name]!r}")
    return ", ".join(diffs)


def read_models_match(evidence: Evidence) -> CheckResult:
    """4. The DynamoDB read models equal the fold of the event store."""
    problems = []
    payments = _payments(evidence)
    for pid, payment in sorted(payments.items()):
        item = evidence.read_payments.get(pid)
        if item is None:
            problems.append((pid, "no payment read model"))
        elif diff := _differences(payment, item, _PAYMENT_FIELDS):
            problems.append((pid, diff))
    accounts = _accounts(evidence)
    for aid, fold in sorted(accounts.items()):
        item = evidence.read_accounts.get(aid)
        expected = {
            "balance": fold.balance,
            "reserved": fold.reserved,
            "captured": fold.captured,
            "available": fold.balance + fold.limit - fold.reserved,
            "limit": fold.limit,
            "version": fold.version,
        }
        if item is None:
            problems.append((aid, "no account read model"))
        elif diff := _differences(expected, item, _ACCOUNT_FIELDS):
            problems.append((aid, diff))
    return _result(
        "read-models",
        "DynamoDB read models equal the fold of the event store",
        len(payments) + len(accounts),
        problems,
    )


def provider_ledger_matches(evidence: Evidence) -> CheckResult:
    """5. Per provider, what we recorded as authorized equals the provider's own ledger."""
    payments = _payments(evidence)
    recorded: dict[str, dict[str, int]] = defaultdict(lambda: {"count": 0, "amount": 0})
    recorded_ids: dict[str, dict[str, int]] = defaultdict(dict)
    for pid, payment in payments.items():
        if payment["status"] == "authorized":
            provider = payment.get("provider") or "?"
            recorded[provider]["count"] += 1
            recorded[provider]["amount"] += int(payment.get("amount") or 0)
            recorded_ids[provider][pid] = int(payment.get("amount") or 0)

    problems = []
    providers = sorted(set(recorded) | set(evidence.provider_ledger))
    for provider in providers:
        ledger = evidence.provider_ledger.get(provider)
        if ledger is None:
            problems.append((provider, "no ledger from this provider"))
            continue
        if ledger.get("error"):
            problems.append((provider, f"ledger unreadable: {ledger['error']}"))
            continue
        charges = ledger.get("charges")
        if charges is not None:
            problems += _compare_charges(provider, recorded_ids[provider], charges)
            continue
        ours = (
            recorded[provider]
            if ledger.get("scope") == "run"
            else (evidence.recorded_all.get(provider, {"count": 0, "amount": 0}))
        )
        for figure in ("count", "amount"):
            if int(ledger.get(figure, 0)) != int(ours.get(figure, 0)):
                problems.append(
                    (provider, f"ledger {figure} {ledger.get(figure)} != recorded {ours[figure]}")
                )
    return _result(
        "provider",
        "recorded authorized = provider ledger (count and amount)",
        len(providers),
        problems,
    )


def _compare_charges(
    provider: str, recorded: dict[str, int], charges: list[dict[str, Any]]
) -> list[tuple[str, str]]:
    problems = []
    charged = Counter(c["payment_id"] for c in charges)
    amounts = {c["payment_id"]: int(c.get("amount") or 0) for c in charges}
    for pid, times in sorted(charged.items()):
        if times > 1:
            problems.append((pid, f"charged {times} times by {provider}"))
        if pid not in recorded:
            problems.append((pid, f"charged by {provider} but not recorded as authorized by it"))
        elif amounts[pid] != recorded[pid]:
            problems.append((pid, f"{provider} charged {amounts[pid]}, recorded {recorded[pid]}"))
    for pid in sorted(set(recorded) - set(charged)):
        problems.append((pid, f"recorded as authorized by {provider}, absent from its ledger"))
    return problems


def published_to_kafka(evidence: Evidence) -> CheckResult:
    """6. Every event in the event store was published to Kafka (by event id)."""
    if evidence.kafka_event_ids is None:
        return CheckResult(
            "kafka",
            "every stored event was published to Kafka",
            False,
            "the topic could not be read",
        )
    seen = set(evidence.kafka_event_ids)
    missing = [
        (e["event_id"], f"{e['type']} of {e['stream_id']} v{e['version']} not on the topic")
        for e in sorted(evidence.events, key=lambda e: e.get("position") or 0)
        if e["event_id"] not in seen
    ]
    return _result(
        "kafka", "every stored event was published to Kafka", len(evidence.events), missing
    )


def notified_once(evidence: Evidence) -> CheckResult:
    """7. Every subscription got each status change of its payments exactly once.

    Once as a receiver counts it: messages carry their event id (the Standard Webhooks
    ``webhook-id``, the Web Push topic), and a receiver keeps one message per id, as those specs
    ask. A copy of a message already received is a redelivery, which a notifier killed between
    sending and recording its batch cannot avoid; the run counts those copies (figures'
    ``notifications_redelivered``) and the scenario's SLO bounds them, zero unless it kills
    workers. A status change never received, or a message for nothing that happened, fails.
    """
    payments = _payments(evidence)
    by_stream = streams(evidence.events)
    got = Counter((n["subscription_id"], n.get("event_id")) for n in evidence.notifications)

    problems = []
    expected_pairs: set[tuple[str, str]] = set()
    for sub in evidence.subscriptions:
        for pid, payment in payments.items():
            if sub.get("payment_id") not in (None, pid):
                continue
            if sub.get("account_id") not in (None, payment.get("account_id")):
                continue
            for event in by_stream.get(f"payment-{pid}", []):
                if event["type"] in STATUS_OF:
                    expected_pairs.add((sub["id"], event["event_id"]))
    for pair in sorted(expected_pairs):
        if got.get(pair, 0) == 0:
            problems.append((pair[1], f"subscription {pair[0]} never got it"))
    for pair in sorted(set(got) - expected_pairs):
        problems.append((str(pair[1]), f"subscription {pair[0]} got an unexpected notification"))
    return _result(
        "notifications",
        "every subscription got each status change exactly once",
        len(expected_pairs),
        problems,
    )


CHECKS: tuple[Callable[[Evidence], CheckResult], ...] = (
    one_final_event,
    within_limits,
    one_payment_per_key,
    read_models_match,
    provider_ledger_matches,
    published_to_kafka,
    notified_once,
)


# What each check reads besides the run's own record.
SOURCES = {
    "final": ("event-store",),
    "limits": ("event-store",),
    "idempotency": ("event-store",),
    "read-models": ("event-store", "read-models"),
    "provider": ("event-store",),
    "kafka": ("event-store",),
    "notifications": ("event-store",),
}


def check_all(evidence: Evidence) -> list[CheckResult]:
    results = []
    for check in CHECKS:
        result = check(evidence)
        missing = [src for src in SOURCES[result.key] if src in evidence.unreadable]
        if missing:
            why = "; ".join(f"{src} unreadable: {evidence.unreadable[src]}" for src in missing)
            result = CheckResult(result.key, result.title, False, why, (), 0)
        results.append(result)
    return results
