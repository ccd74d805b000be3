"""The subscription routes: who gets told of a payment's status changes, by Web Push or webhook.

A client follows only its own accounts and payments: another client's id is 404, as everywhere
in the API. A webhook's signing secret is in the 201 answer and nowhere after it.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from functools import cache
from typing import Any

from chalice import Blueprint, Response
from consim.adapters.subscriptions import SubscriptionStore
from consim.adapters.webhooks import new_secret
from consim.adapters.webpush import application_server_key, load_vapid
from consim.config import settings
from consim.domain.notifications import (
    Subscription,
    SubscriptionKind,
    SubscriptionNotFound,
    Target,
    parse_subscription_request,
)
from consim.observability import annotate, logger
from consim.services import accounts, bootstrap, payments

from .problems import problems
from .requests import client_id, json_object

subscriptions = Blueprint(__name__)
bp = subscriptions  # the name app.py imports


@cache
def _store() -> SubscriptionStore:
    return SubscriptionStore(settings())


@cache
def _vapid_public_key() -> str:
    return application_server_key(load_vapid(settings()))


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        body=json.dumps(body),
        status_code=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def _require_owner(client: str, target: Target) -> None:
    """Raises the target's NotFound unless `client` owns it (read from the event store)."""
    store = bootstrap.event_store()
    if target.kind == "account":
        accounts.load_account(store, client, target.id)
    else:
        payments.load_payment(store, client, target.id)


def _owned(client: str, subscription_id: str) -> Subscription:
    sub = _store().get(subscription_id)
    if sub.client_id != client:
        raise SubscriptionNotFound(subscription_id)
    return sub


@subscriptions.route("/subscriptions", methods=["POST"])
@problems
def post_subscription() -> Response:
    request = subscriptions.current_request
    client = client_id(request)
    wanted = parse_subscription_request(json_object(request), settings().allow_loopback_push)
    _require_owner(client, wanted.target)

    sub = Subscription(
        id=str(uuid.uuid4()),
        client_id=client,
        kind=wanted.kind,
        target=wanted.target,
        created_at=datetime.now(UTC).isoformat(),
        push=wanted.push,
        url=wanted.url,
        secret=new_secret() if wanted.kind is SubscriptionKind.WEBHOOK else None,
    )
    _store().add(sub)
    annotate(**{f"{sub.target.kind}_id": sub.target.id})
    logger.info(
        "subscribed",
        extra={"subscription_id": sub.id, "kind": str(sub.kind), "target": sub.target.key},
    )

    body = sub.public_view()
    if sub.secret is not None:
        body["secret"] = sub.secret
    return _json(body, 201, {"Location": f"/subscriptions/{sub.id}"})


@subscriptions.route("/subscriptions/{subscription_id}", methods=["GET"])
@problems
def get_subscription(subscription_id: str) -> Response:
    client = client_id(subscriptions.current_request)
    return _json(_owned(client, subscription_id).public_view())


@subscriptions.route("/subscriptions/{subscription_id}", methods=["DELETE"])
@problems
def delete_subscription(subscription_id: str) -> Response:
    client = client_id(subscriptions.current_request)
    _owned(client, subscription_id)
    _store().remove(subscription_id)
    logger.info("unsubscribed", extra={"subscription_id": subscription_id})
    return Response(body="", status_code=204)


@subscriptions.route("/vapid-public-key", methods=["GET"])
@problems
def get_vapid_public_key() -> Response:
    # The application server key browsers pass to pushManager.subscribe(); it is public.
    return _json({"public_key": _vapid_public_key()})
