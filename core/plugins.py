"""The plugin manager: loads specialty plugins from the `consilium` entry-point group.

Built-in specialties are registered through the same entry points as third-party packages. A
plugin that fails to import or declares an invalid hook is reported and skipped; the app keeps
serving the others.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import BinaryIO

import pluggy
from jinja2 import BaseLoader, FileSystemLoader

from core import hookspecs
from core.payments.providers import PaymentProvider
from core.settings import Settings
from core.specialty import Assets, DocumentFacts, RecordsDetail, Specialty
from core.static_files import static_files_router

log = logging.getLogger("consilium.plugins")

# Core's own hook implementations, registered through the entry points like any plugin's, and
# loaded whatever the allowlist says (the payment providers core ships).
CORE_ENTRY_POINTS = {"payments"}


@dataclass
class PluginInfo:
    name: str
    module: str
    version: str
    hooks: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class PluginHost:
    manager: pluggy.PluginManager
    plugins: list[PluginInfo]

    @classmethod
    def load(cls, settings: Settings, extra: list[tuple[str, object]] | None = None) -> PluginHost:
        manager = pluggy.PluginManager(hookspecs.PROJECT)
        manager.add_hookspecs(hookspecs)
        infos: list[PluginInfo] = []
        allow = set(settings.plugins_allowlist) if settings.plugins_allowlist else None
        if allow is not None:
            allow |= CORE_ENTRY_POINTS
        entries = importlib.metadata.entry_points(group=hookspecs.PROJECT)
        candidates = [(ep.name, ep) for ep in entries if allow is None or ep.name in allow]
        for name, entry in sorted(candidates, key=lambda pair: pair[0]):
            version = entry.dist.version if entry.dist else "?"
            info = PluginInfo(name=name, module=entry.value, version=version)
            try:
                module = entry.load()
                manager.register(module, name=name)
                manager.check_pending()  # a misspelt hook is this plugin's fault: skip it alone
                info.hooks = [impl.name for impl in manager.get_hookcallers(module) or []]
            except Exception as exc:  # a broken plugin must not take the service down
                info.error = f"{type(exc).__name__}: {exc}"
                log.error("plugin %s skipped: %s", name, info.error)
                if manager.get_plugin(name) is not None:
                    manager.unregister(name=name)
            infos.append(info)
        for name, plugin in extra or []:
            manager.register(plugin, name=name)
            infos.append(PluginInfo(name=name, module=repr(plugin), version="(test)"))
        manager.check_pending()
        if settings.plugins_trace:
            manager.trace.root.setwriter(log.debug)
            manager.enable_tracing()
        return cls(manager=manager, plugins=infos)

    def specialties(self) -> list[Specialty]:
        found: dict[str, Specialty] = {}
        for batch in self.manager.hook.consilium_specialties():
            for specialty in batch:
                found.setdefault(specialty.slug, specialty)
        return sorted(found.values(), key=lambda s: s.title)

    def specialty(self, slug: str) -> Specialty | None:
        return next((s for s in self.specialties() if s.slug == slug), None)

    def payment_providers(self, settings: Settings) -> dict[str, PaymentProvider]:
        """Every provider offered by a plugin, by name (the first of a name wins)."""
        found: dict[str, PaymentProvider] = {}
        for batch in self.manager.hook.consilium_payment_providers(settings=settings):
            for provider in batch or []:
                found.setdefault(provider.name, provider)
        return found

    def validate_intake(
        self, specialty: Specialty, values: dict, subject_birth_date: date | None
    ) -> dict[str, str]:
        errors: dict[str, str] = {}
        for result in self.manager.hook.consilium_validate_intake(
            specialty=specialty, values=values, subject_birth_date=subject_birth_date
        ):
            for name, message in (result or {}).items():
                errors.setdefault(name, message)
        return errors

    def inspect_document(
        self, specialty: Specialty, kind: str, open_file: Callable[[], BinaryIO]
    ) -> DocumentFacts | None:
        """The first plugin's findings about one document. Blocking: call it in a thread. A
        plugin that fails is logged (type only: its message could quote the file) and ignored."""
        try:
            results = self.manager.hook.consilium_inspect_document(
                specialty=specialty, kind=kind, open_file=open_file
            )
        except Exception as exc:
            log.error("consilium_inspect_document failed: %s", type(exc).__name__)
            return DocumentFacts(flags=("could not be read automatically",))
        return next((r for r in results if r is not None), None)

    def describe_records(
        self, specialty: Specialty, facts: list[dict[str, str]]
    ) -> RecordsDetail | None:
        """The first plugin's description of one record line for staff; a plugin that fails is
        logged (type only) and the line shows without it."""
        try:
            results = self.manager.hook.consilium_describe_records(specialty=specialty, facts=facts)
        except Exception as exc:
            log.error("consilium_describe_records failed: %s", type(exc).__name__)
            return None
        return next((r for r in results if r is not None), None)

    def assets(self) -> list[Assets]:
        return [a for a in self.manager.hook.consilium_assets() if a is not None]

    def template_loaders(self) -> list[BaseLoader]:
        return [FileSystemLoader(str(a.templates)) for a in self.assets() if a.templates]

    def static_routers(self) -> list:
        return [
            static_files_router(f"/static/plugins/{a.name}", a.static, f"static-{a.name}")
            for a in self.assets()
            if a.static
        ]
