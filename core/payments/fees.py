"""The default fee schedule (the payments issue makes it editable by admins)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fee:
    label: str
    country: str | None  # ISO code the rule applies to; None = everyone else
    currency: str
    amount_minor: int  # integer minor units (paisa, cents)

    @property
    def display(self) -> str:
        major, minor = divmod(self.amount_minor, 100)
        if self.currency == "PKR":  # rupees are quoted without paisa
            return f"PKR {major:,}"
        return f"{self.currency} {major:,}.{minor:02d}"


DEFAULT_FEES = [
    Fee(label="Residents of Pakistan", country="PK", currency="PKR", amount_minor=450_000),
    Fee(label="Everyone else", country=None, currency="USD", amount_minor=6_500),
]
