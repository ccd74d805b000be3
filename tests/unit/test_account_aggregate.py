import pytest
from consim.domain.account import Account, NoReservation
from consim.domain.errors import InsufficientFunds, InvalidRequest
from consim.domain.events import AccountOpened, FundsCaptured, FundsReleased, FundsReserved

pytestmark = pytest.mark.unit


def account(limit: int = 10, balance: int = 0, *more) -> Account:
    return Account.fold("a1", [AccountOpened("a1", "c1", "EUR", limit, balance), *more])


def test_open_validates_its_input() -> None:
    assert Account.open("a1", "c1", "EUR", 10, 5) == AccountOpened("a1", "c1", "EUR", 10, 5)
    for currency, limit, balance in [
        ("EURO", 1, 0),
        ("EUR", -1, 0),
        ("EUR", 1, "5"),
        ("EUR", True, 0),
    ]:
        with pytest.raises(InvalidRequest):
            Account.open("a1", "c1", currency, limit, balance)


def test_fold_counts_versions_and_available() -> None:
    acc = account(10, 5, FundsReserved("p1", 4))
    assert (acc.version, acc.reserved, acc.available) == (2, 4, 11)
    assert acc.exists
    assert not Account.fold("nope", []).exists


def test_reserve_up_to_available_then_insufficient_funds() -> None:
    acc = account(10, 0)
    for i in range(10):
        [event] = acc.reserve(f"p{i}", 1)
        acc.apply(event)
    assert acc.available == 0
    with pytest.raises(InsufficientFunds) as caught:
        acc.reserve("p10", 1)
    assert (caught.value.amount, caught.value.available) == (1, 0)


def test_reserve_refuses_non_positive_amounts() -> None:
    for amount in (0, -1, 1.5, None):
        with pytest.raises(InvalidRequest):
            account().reserve("p", amount)


def test_reserve_of_the_same_payment_twice_yields_nothing() -> None:
    acc = account(10, 0, FundsReserved("p1", 3))
    assert acc.reserve("p1", 3) == []


def test_capture_moves_the_hold_out_of_balance() -> None:
    acc = account(10, 5, FundsReserved("p1", 3))
    [event] = acc.capture("p1")
    assert event == FundsCaptured("p1", 3)
    acc.apply(event)
    assert (acc.balance, acc.reserved, acc.captured, acc.available) == (2, 0, 3, 12)
    assert acc.capture("p1") == []
    assert acc.release("p1", "late") == []


def test_release_gives_the_hold_back() -> None:
    acc = account(10, 0, FundsReserved("p1", 3))
    [event] = acc.release("p1", "declined")
    assert event == FundsReleased("p1", 3, "declined")
    acc.apply(event)
    assert (acc.reserved, acc.available, acc.balance) == (0, 10, 0)
    assert acc.reserve("p1", 3) == []


def test_capture_without_reservation_is_refused() -> None:
    with pytest.raises(NoReservation):
        account().capture("p9")
    with pytest.raises(NoReservation):
        account().release("p9", "x")
