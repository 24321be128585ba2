"""Each app has its own context (core/context.py): two apps with different plugins in one
process never see each other's settings or plugins, even with their requests interleaved."""

from __future__ import annotations

import asyncio

from litestar import get

from core import context
from core.app import create_app
from core.hookspecs import hookimpl
from core.plugins import PluginHost
from core.specialty import Specialty
from tests.conftest import open_client


class Cardiology:
    @hookimpl
    def consilium_specialties(self) -> list[Specialty]:
        return [Specialty(slug="cardiology", title="Cardiology", summary="Choose this when…")]


@get("/which")
async def which() -> dict[str, object]:
    await asyncio.sleep(0)  # let the other app's request run in between
    current = context.current()
    return {
        "specialties": sorted(s.slug for s in current.plugins.specialties()),
        "hospital": current.settings.hospital_name,
    }


async def test_two_apps_in_one_process_keep_their_own_context(settings) -> None:
    other_settings = settings.model_copy(update={"hospital_name": "Other Hospital"})
    with_cardiology = PluginHost.load(settings, extra=[("cardiology", Cardiology())])
    first = create_app(settings, plugins=with_cardiology)
    second = create_app(other_settings)
    for app in (first, second):
        app.register(which)
    async with open_client(first) as a, open_client(second) as b:
        answers = await asyncio.gather(*(client.get("/which") for client in (a, b) * 10))
    firsts, seconds = answers[0::2], answers[1::2]
    assert all("cardiology" in r.json()["specialties"] for r in firsts)
    assert all(r.json()["hospital"] == settings.hospital_name for r in firsts)
    assert all("cardiology" not in r.json()["specialties"] for r in seconds)
    assert all(r.json()["hospital"] == "Other Hospital" for r in seconds)


def test_outside_an_app_there_is_no_context() -> None:
    # A service called with no app (nor a CLI or test context) says so, instead of using
    # whatever app was made last.
    import pytest

    with pytest.raises(RuntimeError, match="no app context"):
        context.current()
