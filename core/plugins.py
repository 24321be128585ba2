"""The plugin manager: loads plugins from the `consilium` entry-point group and calls their hooks.

Built-in specialties are registered through the same entry points as third-party packages.

- A plugin is skipped ("Not loaded", with the reason) when its module fails to import, pluggy
  refuses one of its hooks (an argument the spec does not have), it names a hook that does not
  exist ("did you mean …"), or a hook is an `async def` or a hook wrapper. A `consilium_*`
  function without `@hookimpl` and a `report_template` missing from the plugin's templates are
  warnings: the plugin loads, the log and /admin/plugins say what is wrong.
- A specialty's own hooks (`consilium_validate_intake`, `consilium_inspect_document`,
  `consilium_describe_records`) are called only for the plugin whose `consilium_specialties`
  returned that specialty.
- Every plugin's hook is called on its own. One that raises, or returns what its spec does not
  allow, is logged with the plugin's name and the error's type only (its message could quote
  patient data), listed on /admin/plugins, and the page is built without that contribution.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TypeVar

import pluggy
from jinja2 import BaseLoader, Environment, FileSystemLoader, TemplateNotFound

from core import hookspecs
from core.payment_providers import PaymentProvider
from core.settings import Settings
from core.specialty import Assets, DocumentFacts, RecordsDetail, Specialty
from core.static_files import static_files_router

log = logging.getLogger("consilium.plugins")

# Core's own hook implementations, registered through the entry points like any plugin's, and
# loaded whatever the allowlist says (the payment providers core ships).
CORE_ENTRY_POINTS = {"payments"}

HOOK_PREFIX = f"{hookspecs.PROJECT}_"
HOOK_NAMES = tuple(sorted(name for name in vars(hookspecs) if name.startswith(HOOK_PREFIX)))

# What a specialty shows for a document its plugin failed to read.
UNREAD = DocumentFacts(flags=("could not be read automatically",))

T = TypeVar("T")


@dataclass(frozen=True)
class HookFailure:
    """How one hook of a plugin failed when it was called: the last time, and how often."""

    hook: str
    problem: str  # "raised ValueError": the error's type, never its message
    at: datetime  # UTC
    count: int = 1


@dataclass
class PluginInfo:
    name: str
    module: str
    version: str
    hooks: list[str] = field(default_factory=list)
    error: str | None = None  # why the plugin was not loaded
    warnings: list[str] = field(default_factory=list)  # loaded, but probably not as meant
    failed: dict[tuple[str, str], HookFailure] = field(default_factory=dict, repr=False)

    @property
    def failures(self) -> list[HookFailure]:
        """Its hooks' failures since the app started, the latest first."""
        return sorted(self.failed.values(), key=lambda failure: failure.at, reverse=True)

    def record_failure(self, hook: str, problem: str, at: datetime) -> None:
        before = self.failed.get((hook, problem))
        count = before.count + 1 if before else 1
        self.failed[(hook, problem)] = HookFailure(hook, problem, at, count)


class UnexpectedResult(Exception):
    """A hook returned something its spec does not allow."""


@dataclass
class PluginHost:
    manager: pluggy.PluginManager
    plugins: list[PluginInfo]
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    # The specialties on offer, kept for the set of plugins registered when they were asked
    # (a dashboard row names its specialty: asking every plugin each time was 7 % of a page).
    _offered_for: tuple[frozenset[int], dict[str, tuple[Specialty, object]]] | None = field(
        default=None, repr=False
    )

    @classmethod
    def load(cls, settings: Settings, extra: list[tuple[str, object]] | None = None) -> PluginHost:
        """Load the plugins of the `consilium` entry points (those of the allowlist, if set).

        `extra` adds plugins by (name, module or object), e.g. the plugin under test: one named
        like an entry point replaces it (the installed copy is not imported)."""
        manager = pluggy.PluginManager(hookspecs.PROJECT)
        manager.add_hookspecs(hookspecs)
        host = cls(manager=manager, plugins=[])
        extra = list(extra or [])
        replaced = {name for name, _ in extra}
        allow = set(settings.plugins_allowlist) if settings.plugins_allowlist else None
        if allow is not None:
            allow |= CORE_ENTRY_POINTS
        versions: dict[str, str] = {}
        entries = importlib.metadata.entry_points(group=hookspecs.PROJECT)
        for entry in sorted(entries, key=lambda entry: entry.name):
            if allow is not None and entry.name not in allow:
                continue
            version = entry.dist.version if entry.dist else "?"
            if entry.name in replaced:
                versions[entry.name] = version
                continue
            info = PluginInfo(name=entry.name, module=entry.value, version=version)
            try:
                plugin = entry.load()
            except Exception as exc:  # a broken plugin must not take the service down
                info.error = f"{type(exc).__name__}: {exc}"
            else:
                host._register(info, plugin)
            host._add(info)
        for name, plugin in extra:
            info = PluginInfo(name, _module_of(plugin), versions.get(name, "(test)"))
            host._register(info, plugin)
            host._add(info)
        if settings.plugins_trace:
            manager.trace.root.setwriter(log.debug)
            manager.enable_tracing()
        host._check_declarations()
        return host

    def plugin(self, name: str) -> PluginInfo | None:
        """What is known about the plugin registered (or refused) under `name`."""
        return next((info for info in self.plugins if info.name == name), None)

    # --- calling hooks ---------------------------------------------------------------------

    def specialties(self) -> list[Specialty]:
        return sorted((s for s, _ in self._offered().values()), key=lambda s: s.title)

    def specialty(self, slug: str) -> Specialty | None:
        found = self._offered().get(slug)
        return found[0] if found else None

    def payment_providers(self, settings: Settings) -> dict[str, PaymentProvider]:
        """Every provider offered by a plugin, by name (the first of a name wins)."""
        found: dict[str, PaymentProvider] = {}
        for plugin in self._implementers("consilium_payment_providers"):
            _, providers = self._call(
                plugin, "consilium_payment_providers", _providers, settings=settings
            )
            for provider in providers or []:
                found.setdefault(provider.name, provider)
        return found

    def validate_intake(
        self, specialty: Specialty, values: dict, subject_birth_date: date | None
    ) -> dict[str, str]:
        """Core's checks against the subject's date of birth (declared on the form's fields),
        then the rules of the plugin that owns `specialty`; the first message for a field wins."""
        errors = specialty.intake.check_subject(values, subject_birth_date)
        owner = self._owner(specialty)
        if owner is not None:
            _, found = self._call(
                owner,
                "consilium_validate_intake",
                _messages,
                specialty=specialty,
                values=values,
                subject_birth_date=subject_birth_date,
            )
            for name, message in (found or {}).items():
                errors.setdefault(name, message)
        return errors

    def validate_review(self, specialty: Specialty, values: dict) -> dict[str, str]:
        """The rules across review fields of the plugin that owns `specialty` ({} when it has
        none, or its hook failed: the failure is reported on /admin/plugins)."""
        owner = self._owner(specialty)
        if owner is None:
            return {}
        _, found = self._call(
            owner, "consilium_validate_review", _messages, specialty=specialty, values=values
        )
        return dict(found or {})

    def suggest_subspecialty(
        self, specialty: Specialty, values: dict, subject_age: int | None
    ) -> str | None:
        """The subspecialty the plugin that owns `specialty` says a case needs: one of the
        specialty's declared values, or None (no preference, no such hook, or it failed)."""
        owner = self._owner(specialty)
        if owner is None or not specialty.subspecialties:
            return None
        declared = {choice.value for choice in specialty.subspecialties}

        def one_of_declared(value: object) -> str | None:
            if value is None or value in declared:
                return value  # type: ignore[return-value]
            raise _unexpected(value, f"one of {sorted(declared)}, or None")

        _, found = self._call(
            owner,
            "consilium_suggest_subspecialty",
            one_of_declared,
            specialty=specialty,
            values=values,
            subject_age=subject_age,
        )
        return found

    def inspect_document(
        self, specialty: Specialty, kind: str, open_file: Callable[[], BinaryIO]
    ) -> DocumentFacts | None:
        """What the plugin that owns `specialty` found in one document. Blocking: call it in a
        thread. When the plugin fails, the document is flagged as not read automatically."""
        owner = self._owner(specialty)
        if owner is None:
            return None
        ok, found = self._call(
            owner,
            "consilium_inspect_document",
            _optional(DocumentFacts),
            specialty=specialty,
            kind=kind,
            open_file=open_file,
        )
        return found if ok else UNREAD

    def describe_records(
        self, specialty: Specialty, facts: list[dict[str, str]]
    ) -> RecordsDetail | None:
        """What the plugin that owns `specialty` tells staff about one record line (None when
        it says nothing or fails: the line shows without it)."""
        owner = self._owner(specialty)
        if owner is None:
            return None
        _, found = self._call(
            owner,
            "consilium_describe_records",
            _optional(RecordsDetail),
            specialty=specialty,
            facts=facts,
        )
        return found

    def assets(self) -> list[Assets]:
        found = []
        for plugin in self._implementers("consilium_assets"):
            _, assets = self._call(plugin, "consilium_assets", _optional(Assets))
            if assets is not None:
                found.append(assets)
        return found

    def template_loaders(self) -> list[BaseLoader]:
        return [FileSystemLoader(str(a.templates)) for a in self.assets() if a.templates]

    def static_routers(self) -> list:
        return [
            static_files_router(f"/static/plugins/{a.name}", a.static, f"static-{a.name}")
            for a in self.assets()
            if a.static
        ]

    # --- internals -------------------------------------------------------------------------

    def _implementers(self, hook: str) -> list[object]:
        """The plugins implementing `hook`, in the order pluggy calls them (last registered
        first)."""
        impls = getattr(self.manager.hook, hook).get_hookimpls()
        return list(dict.fromkeys(impl.plugin for impl in reversed(impls)))

    def _offered(self) -> dict[str, tuple[Specialty, object]]:
        """slug → (specialty, the plugin that offers it); the first plugin of a slug wins. Asked
        of the plugins once for each set of registered plugins (again while one fails)."""
        registered = frozenset(id(plugin) for plugin in self.manager.get_plugins())
        if self._offered_for is not None and self._offered_for[0] == registered:
            return self._offered_for[1]
        found: dict[str, tuple[Specialty, object]] = {}
        answered = True
        for plugin in self._implementers("consilium_specialties"):
            ok, batch = self._call(plugin, "consilium_specialties", _specialties)
            answered = answered and ok
            for specialty in batch or []:
                found.setdefault(specialty.slug, (specialty, plugin))
        if answered:  # a plugin that failed is asked again next time
            self._offered_for = (registered, found)
        return found

    def _owner(self, specialty: Specialty) -> object | None:
        found = self._offered().get(specialty.slug)
        return found[1] if found else None

    def _call(
        self, plugin: object, hook: str, check: Callable[[Any], T], **kwargs: Any
    ) -> tuple[bool, T | None]:
        """(True, checked result) of `plugin`'s implementation of `hook` alone ((True, None)
        when it has none), or (False, None) when it failed: logged and recorded, type only."""
        others = [other for other in self.manager.get_plugins() if other is not plugin]
        caller = self.manager.subset_hook_caller(hook, remove_plugins=others)
        try:
            results = caller(**kwargs)
            result = results[0] if results else None
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()  # never awaited: say so here, not in a RuntimeWarning
                raise UnexpectedResult("returned a coroutine: hooks must be plain def")
            return True, check(result)
        except UnexpectedResult as problem:
            self._failed(plugin, hook, str(problem), None)
        except Exception as exc:  # a plugin's bug must not take the page down
            self._failed(plugin, hook, f"raised {type(exc).__name__}", exc.__traceback__)
        return False, None

    def _failed(self, plugin: object, hook: str, problem: str, trace: TracebackType | None) -> None:
        name = self.manager.get_name(plugin) or _module_of(plugin)
        where = f" ({_origin(trace)})" if trace else ""
        log.error("plugin %s: %s %s%s", name, hook, problem, where)
        with self.lock:
            self._info(name, plugin).record_failure(hook, problem, datetime.now(UTC))

    def _info(self, name: str, plugin: object) -> PluginInfo:
        """The PluginInfo of `name`; one is added for a plugin registered on the manager
        directly."""
        with self.lock:
            info = self.plugin(name)
            if info is None:
                info = PluginInfo(name, _module_of(plugin), "?")
                info.hooks = sorted(c.name for c in self.manager.get_hookcallers(plugin) or [])
                self.plugins.append(info)
            return info

    def _register(self, info: PluginInfo, plugin: object) -> None:
        try:
            self.manager.register(plugin, name=info.name)  # checks each hook's argument names
        except Exception as exc:
            info.error = f"{type(exc).__name__}: {exc}"
        else:
            problems = _refusals(self.manager, plugin)
            if problems:
                self.manager.unregister(name=info.name)
                info.error = "PluginValidationError: " + "; ".join(problems)
            else:
                info.hooks = sorted(c.name for c in self.manager.get_hookcallers(plugin) or [])
        info.warnings.extend(_unmarked(self.manager, plugin))

    def _add(self, info: PluginInfo) -> None:
        self.plugins.append(info)
        if info.error:
            log.error("plugin %s not loaded: %s", info.name, info.error)
        for warning in info.warnings:
            log.warning("plugin %s: %s", info.name, warning)

    def _check_declarations(self) -> None:
        """What a plugin declares that cannot work: a slug another plugin already offers, a
        report template missing from the plugin's templates folder. Warnings, not refusals."""
        offered: dict[str, str] = {}
        for plugin in self._implementers("consilium_specialties"):
            name = self.manager.get_name(plugin) or _module_of(plugin)
            _, batch = self._call(plugin, "consilium_specialties", _specialties)
            if not batch:
                continue
            _, assets = self._call(plugin, "consilium_assets", _optional(Assets))
            warnings = []
            for specialty in batch:
                if specialty.slug in offered:
                    warnings.append(
                        f"specialty {specialty.slug!r} is not offered: plugin "
                        f"{offered[specialty.slug]!r} offers the same slug"
                    )
                    continue
                offered[specialty.slug] = name
                if specialty.report_template:
                    problem = _missing_template(specialty, assets)
                    if problem:
                        warnings.append(problem)
            for warning in warnings:
                log.warning("plugin %s: %s", name, warning)
            self._info(name, plugin).warnings.extend(warnings)


# --- result checks: what each hook may return ----------------------------------------------


def _unexpected(value: object, expected: str) -> UnexpectedResult:
    return UnexpectedResult(f"returned {type(value).__name__}, not {expected}")


def _specialties(value: object) -> list[Specialty]:
    if isinstance(value, list | tuple) and all(isinstance(s, Specialty) for s in value):
        return list(value)
    raise _unexpected(value, "a list of Specialty")


def _optional(kind: type[T]) -> Callable[[object], T | None]:
    def check(value: object) -> T | None:
        if value is None or isinstance(value, kind):
            return value
        raise _unexpected(value, f"{kind.__name__} or None")

    return check


def _messages(value: object) -> dict[str, str] | None:
    if value is None or (
        isinstance(value, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    ):
        return value
    raise _unexpected(value, "a dict of field name → message, or None")


def _providers(value: object) -> list[PaymentProvider]:
    if value is None:
        return []
    if isinstance(value, list | tuple) and all(isinstance(p, PaymentProvider) for p in value):
        return list(value)
    raise _unexpected(value, "a list of PaymentProvider, or None")


# --- load-time checks ----------------------------------------------------------------------


def _suggestion(name: str) -> str:
    """A hint, " (did you mean consilium_assets?)", for a name close to a hook's; else ""."""
    short = {hook.removeprefix(HOOK_PREFIX): hook for hook in HOOK_NAMES}
    close = difflib.get_close_matches(name.removeprefix(HOOK_PREFIX), short, n=1, cutoff=0.75)
    return f" (did you mean {short[close[0]]}?)" if close else ""


def _refusals(manager: pluggy.PluginManager, plugin: object) -> list[str]:
    """Why a registered plugin cannot be used: unknown hook names, async hooks, wrappers."""
    problems = []
    for caller in manager.get_hookcallers(plugin) or []:
        if not caller.has_spec():
            problems.append(f"unknown hook {caller.name}{_suggestion(caller.name)}")
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            function = impl.function
            if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
                problems.append(
                    f"{caller.name} is an async def: hooks must be plain def (synchronous)"
                )
            elif impl.wrapper or impl.hookwrapper:
                problems.append(
                    f"{caller.name} is a hook wrapper: each plugin's hooks are called on their own"
                )
    return problems


def _unmarked(manager: pluggy.PluginManager, plugin: object) -> list[str]:
    """Warnings for `consilium_*` functions and methods that pluggy ignores (no @hookimpl)."""
    warnings = []
    for attr in sorted(dir(plugin)):
        if not attr.startswith(HOOK_PREFIX):
            continue
        value = inspect.getattr_static(plugin, attr, None)
        if isinstance(value, staticmethod | classmethod):
            value = value.__func__
        if not inspect.isroutine(value) or manager.parse_hookimpl_opts(plugin, attr) is not None:
            continue
        if hasattr(value, f"{hookspecs.PROJECT}_spec"):
            continue  # a hook specification imported from core.hookspecs
        if attr in HOOK_NAMES:
            warnings.append(f"{attr} has no @hookimpl, so it is never called: add @hookimpl")
        else:
            warnings.append(
                f"{attr} has no @hookimpl and is not a hook{_suggestion(attr)}, so it is never "
                "called"
            )
    return warnings


def _missing_template(specialty: Specialty, assets: Assets | None) -> str | None:
    template = specialty.report_template
    where = f"report_template {template!r} of specialty {specialty.slug!r}"
    if assets is None or assets.templates is None:
        return f"{where}: the plugin has no templates folder (consilium_assets)"
    try:
        loader = FileSystemLoader(str(assets.templates))
        loader.get_source(Environment(autoescape=True), str(template))
    except TemplateNotFound:
        return f"{where} is not in the plugin's templates folder {assets.templates}"
    return None


def _module_of(plugin: object) -> str:
    if inspect.ismodule(plugin):
        return plugin.__name__
    return f"{type(plugin).__module__}.{type(plugin).__qualname__}"


def _origin(trace: TracebackType) -> str:
    """Where an exception was raised, as `folder/file.py:line` (never its message)."""
    while trace.tb_next is not None:
        trace = trace.tb_next
    path = Path(trace.tb_frame.f_code.co_filename)
    return f"{path.parent.name}/{path.name}:{trace.tb_lineno}"
