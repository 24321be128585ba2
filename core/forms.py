"""Typed form fields that specialty plugins declare and core renders, validates and stores.

A plugin describes a form as data (a `Form` of fields); it never writes HTML for a plain field.
Values are stored as JSON together with the form's version, so an old case still renders after
a plugin changes its form.

Submitted names: a top-level field `x` posts as `x`; field `y` of item 2 of repeating group
`g` posts as `g.2.y`; a multi-choice posts one value per checked box.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
DATE_FORMAT = "%-d %b %Y"  # "2 Oct 2026", as every page shows a date


class FormData(Protocol):
    """What a submitted form offers (Litestar's FormMultiDict, or a plain mapping in tests)."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def getall(self, key: str) -> list[Any]: ...


class MappingFormData:
    """A dict of name → str | list[str] as FormData (for service calls and tests)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values

    def get(self, key: str, default: Any = None) -> Any:
        value = self._values.get(key, default)
        return value[0] if isinstance(value, list) and value else value

    def getall(self, key: str) -> list[Any]:
        value = self._values.get(key)
        if value is None:
            return []
        return list(value) if isinstance(value, list | tuple) else [value]

    def keys(self):
        return self._values.keys()


@dataclass(frozen=True)
class Choice:
    value: str
    label: str
    help: str = ""


@dataclass(frozen=True)
class ShowIf:
    """Show (and require) a field only when another field of the same form has one of these
    values. For a yes/no field use "yes" / "no"; for a multi-choice, any checked value counts."""

    field: str
    values: tuple[str, ...]

    def holds(self, values: Mapping[str, Any]) -> bool:
        current = values.get(self.field)
        if isinstance(current, list):
            return any(item in self.values for item in current)
        return current in self.values


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    help: str = ""
    required: bool = False
    show_if: ShowIf | None = None

    kind = "field"

    def clean(self, raw: FormData, prefix: str) -> tuple[Any, str | None]:
        """(value, error message). An empty answer is None (or [] for multi-choice)."""
        raise NotImplementedError

    def subject_error(self, value: Any, birth_date: date) -> str | None:
        """A message when the cleaned `value` contradicts the date of birth of the person the
        opinion is for (see `Form.check_subject`), else None."""
        return None

    @staticmethod
    def _text(raw: FormData, key: str) -> str:
        value = raw.get(key, "")
        return str(value).strip() if value is not None else ""


@dataclass(frozen=True)
class Text(Field):
    max_length: int = 200
    kind = "text"

    def clean(self, raw: FormData, prefix: str) -> tuple[Any, str | None]:
        text = self._text(raw, prefix + self.name)
        if len(text) > self.max_length:
            return text, f"Use at most {self.max_length} characters."
        return text or None, None


@dataclass(frozen=True)
class LongText(Text):
    max_length: int = 5000
    rows: int = 5
    kind = "long_text"


@dataclass(frozen=True)
class SingleChoice(Field):
    choices: tuple[Choice, ...] = ()
    kind = "choice"

    def clean(self, raw: FormData, prefix: str) -> tuple[Any, str | None]:
        text = self._text(raw, prefix + self.name)
        if text and text not in {c.value for c in self.choices}:
            return None, "Choose one of the options."
        return text or None, None

    def label_of(self, value: Any) -> str:
        return next((c.label for c in self.choices if c.value == value), str(value))


@dataclass(frozen=True)
class MultiChoice(SingleChoice):
    kind = "multi_choice"

    def clean(self, raw: FormData, prefix: str) -> tuple[Any, str | None]:
        allowed = [c.value for c in self.choices]
        picked = [str(v) for v in raw.getall(prefix + self.name) if str(v).strip()]
        if any(value not in allowed for value in picked):
            return [], "Choose from the options shown."
        return [value for value in allowed if value in picked], None


@dataclass(frozen=True)
class YesNo(SingleChoice):
    choices: tuple[Choice, ...] = (Choice("yes", "Yes"), Choice("no", "No"))
    kind = "yes_no"


@dataclass(frozen=True)
class ScoredCategory(SingleChoice):
    """An ordered clinical scale such as BI-RADS 0–6 with 4A/4B/4C, stored by its value."""

    kind = "scored_category"


@dataclass(frozen=True)
class DateField(Field):
    allow_future: bool = False
    allow_past: bool = True
    # "Not before the subject's birth": core refuses an earlier date once it knows the date of
    # birth of the person the opinion is for (intake forms; see Form.check_subject).
    not_before_birth: bool = False
    kind = "date"

    def clean(self, raw: FormData, prefix: str) -> tuple[Any, str | None]:
        text = self._text(raw, prefix + self.name)
        if not text:
            return None, None
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return text, "Enter a date like 2026-10-02."
        if not self.allow_future and day > date.today():
            return text, "This date cannot be in the future."
        if not self.allow_past and day < date.today():
            return text, "This date cannot be in the past."
        if day.year < 1900:
            return text, "Enter a year after 1900."
        return day.isoformat(), None

    def subject_error(self, value: Any, birth_date: date) -> str | None:
        if not self.not_before_birth or not value:
            return None
        try:
            day = date.fromisoformat(str(value))
        except ValueError:
            return None  # not a cleaned date: its own check already said so
        if day < birth_date:
            born = birth_date.strftime(DATE_FORMAT)
            return f"This date is before the patient was born ({born}). Check the date."
        return None


@dataclass(frozen=True)
class Number(Field):
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    decimals: int = 0
    kind = "number"

    def clean(self, raw: FormData, prefix: str) -> tuple[Any, str | None]:
        text = self._text(raw, prefix + self.name).replace(",", "")
        if not text:
            return None, None
        try:
            number = Decimal(text)
        except InvalidOperation:
            return text, "Enter a number."
        if not number.is_finite():
            return text, "Enter a number."
        if self.decimals == 0 and number != number.to_integral_value():
            return text, "Enter a whole number."
        if self.minimum is not None and number < Decimal(str(self.minimum)):
            return text, f"Enter {self._fmt(self.minimum)}{self._unit()} or more."
        if self.maximum is not None and number > Decimal(str(self.maximum)):
            return text, f"Enter {self._fmt(self.maximum)}{self._unit()} or less."
        value = round(float(number), self.decimals) if self.decimals else int(number)
        return value, None

    def _unit(self) -> str:
        return f" {self.unit}" if self.unit else ""

    @staticmethod
    def _fmt(value: float) -> str:
        return f"{value:g}"


@dataclass(frozen=True)
class Year(Number):
    """A calendar year, e.g. of an earlier operation: a whole number from `minimum` (1900) to
    this year (any year with `allow_future=True`). Rendered and stored like a `Number` (an int).
    `not_before_birth=True`: core refuses a year before the subject's year of birth."""

    minimum: float | None = 1900
    allow_future: bool = False
    not_before_birth: bool = False

    def clean(self, raw: FormData, prefix: str) -> tuple[Any, str | None]:
        value, error = super().clean(raw, prefix)
        this_year = date.today().year
        if error is None and value is not None and not self.allow_future and value > this_year:
            return self._text(raw, prefix + self.name), (
                f"This year is in the future. Enter {this_year} or earlier."
            )
        return value, error

    def subject_error(self, value: Any, birth_date: date) -> str | None:
        if self.not_before_birth and isinstance(value, int) and value < birth_date.year:
            return f"This year is before the patient was born ({birth_date.year}). Check the year."
        return None


@dataclass(frozen=True)
class Repeating(Field):
    """One entry per lesion / specimen / study: a list of small sub-forms."""

    fields: tuple[Field, ...] = ()
    min_items: int = 0
    max_items: int = 10
    item_label: str = "Entry"
    kind = "repeating"

    def clean(self, raw: FormData, prefix: str) -> tuple[Any, str | None]:
        raise NotImplementedError("repeating groups are cleaned by Form.validate")


@dataclass(frozen=True)
class Form:
    """A versioned list of fields. Bump `version` whenever the fields change meaning."""

    version: int
    fields: tuple[Field, ...]

    def __post_init__(self) -> None:
        check_fields(self.fields)

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    def validate(self, raw: FormData) -> tuple[dict[str, Any], dict[str, str]]:
        """Clean every field. Hidden (show-if false) fields are dropped and never required.

        Returns (values, errors); errors map submitted names to a message for the person.
        """
        return _validate(self.fields, raw, prefix="")

    def check_subject(
        self, values: Mapping[str, Any], subject_birth_date: date | None
    ) -> dict[str, str]:
        """Core's checks of cleaned `values` against the date of birth of the person the opinion
        is for (`DateField(not_before_birth=True)`, `Year(not_before_birth=True)`); nothing
        while it is unknown. Keys as for `consilium_validate_intake`: a field of a repeating
        group is `"<group>.<position in values[group]>.<field>"`."""
        if subject_birth_date is None:
            return {}
        return _check_subject(self.fields, values, subject_birth_date, prefix="")

    def empty_item(self, group: str) -> dict[str, Any]:
        spec = self.field(group)
        assert isinstance(spec, Repeating)
        return {f.name: None for f in spec.fields}


def visible_names(form: Form, raw: FormData) -> set[str]:
    """Submitted names of the fields whose show-if rule holds for these entries."""
    values, _ = form.validate(raw)
    return _visible(form.fields, values, raw, prefix="")


def _visible(
    fields: Sequence[Field], values: Mapping[str, Any], raw: FormData, prefix: str
) -> set[str]:
    names = set()
    for spec in fields:
        if spec.show_if and not spec.show_if.holds(values):
            continue
        names.add(prefix + spec.name)
        if isinstance(spec, Repeating):
            for index in group_indexes(raw, f"{prefix}{spec.name}."):
                item_prefix = f"{prefix}{spec.name}.{index}."
                item_values, _ = _validate(spec.fields, raw, prefix=item_prefix)
                names |= _visible(spec.fields, item_values, raw, prefix=item_prefix)
    return names


def group_indexes(raw: FormData, base: str) -> list[int]:
    """The item numbers present in the entries of a repeating group (`base` = "group.")."""
    found = set()
    for key in _keys(raw):
        head = key[len(base) :].split(".", 1)[0] if key.startswith(base) else ""
        if head.isdigit():
            found.add(int(head))
    return sorted(found)


def _validate(
    fields: Sequence[Field], raw: FormData, prefix: str
) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for spec in fields:
        if isinstance(spec, Repeating):
            items, item_errors = _validate_group(spec, raw, prefix)
            values[spec.name] = items
            errors.update(item_errors)
            continue
        value, error = spec.clean(raw, prefix)
        values[spec.name] = value
        if error:
            errors[prefix + spec.name] = error
    for spec in fields:  # show-if needs every value of this level first
        if spec.show_if and not spec.show_if.holds(values):
            values[spec.name] = [] if isinstance(spec, MultiChoice | Repeating) else None
            for key in [
                k
                for k in errors
                if k == prefix + spec.name or k.startswith(f"{prefix}{spec.name}.")
            ]:
                del errors[key]
        elif (
            spec.required
            and values[spec.name] in (None, "", [])
            and prefix + spec.name not in errors
        ):
            errors[prefix + spec.name] = _required_message(spec)
    return values, errors


def _validate_group(
    spec: Repeating, raw: FormData, prefix: str
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    base = f"{prefix}{spec.name}."
    indexes = group_indexes(raw, base)
    items: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    for index in indexes[: spec.max_items]:
        item_values, item_errors = _validate(spec.fields, raw, prefix=f"{base}{index}.")
        if all(v in (None, "", []) for v in item_values.values()):
            continue  # a blank row the person added and left empty
        items.append(item_values)
        errors.update(item_errors)  # keyed by the submitted names, so the page can show them
    if len(indexes) > spec.max_items:
        errors[prefix + spec.name] = f"Add at most {spec.max_items} entries."
    elif len(items) < spec.min_items:
        noun = spec.item_label.lower()
        errors[prefix + spec.name] = (
            f"Add at least {spec.min_items} {noun}{'s' if spec.min_items > 1 else ''}."
        )
    return items, errors


def _check_subject(
    fields: Sequence[Field], values: Mapping[str, Any], birth_date: date, prefix: str
) -> dict[str, str]:
    errors: dict[str, str] = {}
    for spec in fields:
        value = values.get(spec.name)
        if isinstance(spec, Repeating):
            for position, item in enumerate(value or []):
                item_prefix = f"{prefix}{spec.name}.{position}."
                errors.update(_check_subject(spec.fields, item, birth_date, item_prefix))
        elif message := spec.subject_error(value, birth_date):
            errors[prefix + spec.name] = message
    return errors


def _keys(raw: FormData) -> list[str]:
    keys = getattr(raw, "keys", None)
    return [str(k) for k in keys()] if keys else []


def _required_message(spec: Field) -> str:
    if isinstance(spec, MultiChoice):
        return f"Choose at least one option for “{spec.label}”."
    if isinstance(spec, SingleChoice):
        return f"Choose an answer for “{spec.label}”."
    return f"Answer “{spec.label}”."


def check_fields(fields: Sequence[Field], *, nested: bool = False) -> None:
    """Refuse a malformed form declaration at load time, not in front of a patient."""
    names = [f.name for f in fields]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"duplicate field names: {sorted(duplicates)}")
    for spec in fields:
        if not NAME_RE.match(spec.name):
            raise ValueError(f"field name {spec.name!r} must be lower_snake_case")
        if spec.show_if and spec.show_if.field not in names:
            raise ValueError(f"{spec.name}: show_if refers to unknown field {spec.show_if.field!r}")
        if isinstance(spec, SingleChoice) and not spec.choices:
            raise ValueError(f"{spec.name}: a choice field needs choices")
        if isinstance(spec, Year) and spec.decimals:
            raise ValueError(f"{spec.name}: a year is a whole number (decimals=0)")
        if isinstance(spec, Repeating):
            if nested:
                raise ValueError(f"{spec.name}: repeating groups cannot be nested")
            check_fields(spec.fields, nested=True)


@dataclass
class StoredAnswers:
    """Answers as stored on a case: the form version they were given against, the values, and
    the answers in words as the form showed them then (`summary`), so a case still reads
    correctly after its plugin changes or drops a field."""

    version: int
    values: dict[str, Any] = field(default_factory=dict)
    summary: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def capture(cls, form: Form, values: dict[str, Any]) -> StoredAnswers:
        return cls(version=form.version, values=values, summary=summarise(form.fields, values))

    def as_json(self) -> dict[str, Any]:
        return {"version": self.version, "values": self.values, "summary": self.summary}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> StoredAnswers:
        if not data:
            return cls(version=0)
        return cls(
            version=int(data.get("version", 0)),
            values=dict(data.get("values", {})),
            summary=list(data.get("summary", [])),
        )


def summarise(fields: Sequence[Field], values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """[{label, text} | {label, entries: [[{label, text}, …], …]}] for every answered field."""
    lines: list[dict[str, Any]] = []
    for spec in fields:
        value = values.get(spec.name)
        if value in (None, "", []):
            continue
        if isinstance(spec, Repeating):
            items = [summarise(spec.fields, item) for item in value]
            lines.append({"label": spec.label, "entries": items})
        else:
            lines.append({"label": spec.label, "text": display_value(spec, value)})
    return lines


def display_value(spec: Field, value: Any) -> str:
    """An answer in words, for review pages and reports."""
    if value in (None, "", []):
        return "—"
    if isinstance(spec, MultiChoice):
        return ", ".join(spec.label_of(v) for v in value)
    if isinstance(spec, SingleChoice):
        return spec.label_of(value)
    if isinstance(spec, Number):
        return (
            f"{value:g} {spec.unit}".strip()
            if isinstance(value, float)
            else f"{value} {spec.unit}".strip()
        )
    if isinstance(spec, DateField):
        try:
            return date.fromisoformat(value).strftime(DATE_FORMAT)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def controlling_names(form: Form) -> set[str]:
    """Top-level fields whose answer decides whether another top-level field is shown."""
    return {spec.show_if.field for spec in form.fields if spec.show_if}


def condition_text(form: Form, spec: Field) -> str:
    """ "Only if you answered “Yes” to “Any allergies?”" in words, for a folded field."""
    assert spec.show_if is not None
    controller = form.field(spec.show_if.field)
    if isinstance(controller, SingleChoice):
        answers = [controller.label_of(value) for value in spec.show_if.values]
        question = controller.label
    else:
        answers, question = list(spec.show_if.values), spec.show_if.field
    return f"Only if you answered “{'” or “'.join(answers)}” to “{question}”"


def kept_item_indexes(form: Form, raw: FormData) -> dict[str, list[int]]:
    """For each repeating group, the submitted item numbers of the rows validation keeps, in
    order: position i of the cleaned list came from item number result[group][i]."""
    result = {}
    for spec in form.fields:
        if isinstance(spec, Repeating):
            kept = []
            for index in group_indexes(raw, f"{spec.name}.")[: spec.max_items]:
                values, _ = _validate(spec.fields, raw, prefix=f"{spec.name}.{index}.")
                if not all(v in (None, "", []) for v in values.values()):
                    kept.append(index)
            result[spec.name] = kept
    return result


def change_rows(form: Form, raw: dict[str, list[str]], action: str) -> dict[str, list[str]]:
    """Add a blank row to a repeating group ("add:<group>"), or remove one
    ("remove:<group>:<item>"): the form's buttons do it without JavaScript."""
    parts = action.split(":")
    group = form.field(parts[1]) if len(parts) > 1 else None
    if not isinstance(group, Repeating):
        return raw
    base = f"{group.name}."
    indexes = group_indexes(MappingFormData(raw), base)
    if parts[0] == "add" and len(indexes) < group.max_items:
        raw = {**raw, f"{base}{(indexes[-1] + 1) if indexes else 0}.{group.fields[0].name}": [""]}
    elif parts[0] == "remove" and len(parts) == 3 and parts[2].isdigit():
        prefix = f"{base}{parts[2]}."
        raw = {key: value for key, value in raw.items() if not key.startswith(prefix)}
    return raw
