"""Money in integer minor units with an ISO currency code, as people read and type it."""

from __future__ import annotations

CURRENCY_DIGITS = {"JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3, "OMR": 3}


def amount_text(amount_minor: int, currency: str) -> str:
    """ "4,500" (whole rupees), "65.00": the number as people write it."""
    digits = CURRENCY_DIGITS.get(currency, 2)
    if (currency == "PKR" and amount_minor % 100 == 0) or digits == 0:
        return f"{amount_minor // 10**digits:,}"
    major, minor = divmod(amount_minor, 10**digits)
    return f"{major:,}.{minor:0{digits}d}"


def money(amount_minor: int, currency: str) -> str:
    """For people: "PKR 4,500", "USD 65.00"."""
    return f"{currency} {amount_text(amount_minor, currency)}"


def parse_amount(text: str, currency: str) -> int | None:
    """Minor units from what a person typed ("4,500", "65.00"), or None if it is not an amount."""
    digits = CURRENCY_DIGITS.get(currency, 2)
    whole, _, fraction = text.strip().replace(",", "").partition(".")
    if not whole.isdigit() or (fraction and not fraction.isdigit()) or len(fraction) > digits:
        return None
    amount = int(whole) * 10**digits + int((fraction or "0").ljust(digits, "0"))
    return amount if 0 < amount <= 100_000_000_00 else None
