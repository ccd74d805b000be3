import pytest
from consim.domain.errors import InvalidRequest, PaymentAlreadyFinal
from consim.domain.events import PaymentAuthorized, PaymentDeclined, PaymentFailed
from consim.domain.payment import Payment
from consim.domain.rules import MAX_AMOUNT, MAX_DESCRIPTION

pytestmark = pytest.mark.unit


def requested() -> Payment:
    event = Payment.request("p1", "a1", "c1", 5, "EUR", "coffee", "k1")
    return Payment.fold("p1", [event])


def test_request_validates_its_input() -> None:
    bad = [
        (0, "EUR", None),
        (-3, "EUR", None),
        (MAX_AMOUNT + 1, "EUR", None),
        ("5", "EUR", None),
        (5, "eur", None),
        (5, "XXX", None),
        (5, "EUR", "x" * (MAX_DESCRIPTION + 1)),
        (5, "EUR", 7),
    ]
    for amount, currency, description in bad:
        with pytest.raises(InvalidRequest):
            Payment.request("p", "a", "c", amount, currency, description, "k")


def test_a_requested_payment_is_pending() -> None:
    payment = requested()
    assert (payment.status, payment.amount, payment.version) == ("pending", 5, 1)
    assert not payment.is_final


RECORDERS = {
    "authorized": lambda p: p.authorize("default", "ref-1", 2),
    "declined": lambda p: p.decline("default", "card declined"),
    "failed": lambda p: p.fail("provider timeout"),
}


@pytest.mark.parametrize("status", sorted(RECORDERS))
def test_exactly_one_final_status(status) -> None:
    payment = requested()
    [event] = RECORDERS[status](payment)
    payment.apply(event)
    assert payment.status == status
    assert payment.is_final

    assert RECORDERS[status](payment) == []  # the same outcome again: nothing new
    for other in sorted(set(RECORDERS) - {status}):
        with pytest.raises(PaymentAlreadyFinal):
            RECORDERS[other](payment)


def test_authorized_payment_keeps_provider_details() -> None:
    payment = requested()
    payment.apply(PaymentAuthorized("p1", "a1", "fallback", "ref-9", 3))
    assert (payment.provider, payment.provider_ref, payment.fee) == ("fallback", "ref-9", 3)
    payment = requested()
    payment.apply(PaymentDeclined("p1", "a1", "default", "no funds"))
    assert payment.reason == "no funds"
    payment = requested()
    payment.apply(PaymentFailed("p1", "a1", "timeout"))
    assert payment.provider is None
