"""Input rules shared by the aggregates: what an amount, a currency or a description may be."""

from __future__ import annotations

from .errors import InvalidRequest

# Minor units. Far above any real card payment, far below where float-minded clients lose digits.
MAX_AMOUNT = 100_000_000_000
MAX_DESCRIPTION = 500

# ISO 4217 codes in circulation (funds and precious metals left out).
_CODES = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
    BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP
    GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR
    KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK
    MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR
    SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS
    UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
"""
CURRENCIES = frozenset(_CODES.split())


def require_currency(currency: object) -> str:
    if not isinstance(currency, str) or currency not in CURRENCIES:
        raise InvalidRequest(f"currency must be an ISO 4217 code such as EUR, got {currency!r}")
    return currency


def require_amount(amount: object, name: str = "amount") -> int:
    # bool is an int in Python; true is not an amount.
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise InvalidRequest(f"{name} must be an integer in minor units")
    if amount <= 0 or amount > MAX_AMOUNT:
        raise InvalidRequest(f"{name} must be between 1 and {MAX_AMOUNT}, got {amount}")
    return amount


def require_non_negative(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest(f"{name} must be an integer in minor units")
    if value < 0 or value > MAX_AMOUNT:
        raise InvalidRequest(f"{name} must be between 0 and {MAX_AMOUNT}, got {value}")
    return value


def require_description(description: object) -> str | None:
    if description is None:
        return None
    if not isinstance(description, str):
        raise InvalidRequest("description must be a string")
    if len(description) > MAX_DESCRIPTION:
        raise InvalidRequest(f"description must be at most {MAX_DESCRIPTION} characters")
    return description
