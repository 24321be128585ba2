"""The one base error of the services: something a person asked for cannot be done.

`message` is written for that person (plain words, no data of anyone else) and is safe to show;
`status` is what a web handler answers with when it does not handle the refusal itself. Field
problems (`InvalidInput`) carry `errors`: {field name: message}, and the form is shown again
with them. Domains subclass these only to be caught apart (e.g. `PaymentRefused`).
"""

from __future__ import annotations


class Refused(Exception):
    status = 409  # not possible now (or not for you)

    def __init__(self, message: str = "", *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class InvalidInput(Refused):
    """A form with field errors; the page re-renders with them and with what was typed."""

    status = 400

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(" ".join(errors.values()))
        self.errors = errors


class NotFound(Refused):
    """It does not exist, or not for this person: the same answer either way (404)."""

    status = 404
