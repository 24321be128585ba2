"""Pages under load: what a request that does nothing special costs. Not a test: it prints figures.

    .venv/bin/python bench/pages.py               # 10 s per target
    .venv/bin/python bench/pages.py --seconds 5   # a quick run

The app runs under uvicorn in a subprocess (SQLite and local files in a temporary var dir, no
access log), as `make run` serves it. Two patients are made beforehand through the services:
one with 10 cases, one with 1,000. wrk (one thread, 16 connections) then loads, one after the
other:

- the anonymous home page `/` (the floor of a rendered page: routing, template, headers);
- a static file `/static/app.css`;
- the signed-in dashboard of the patient with 10 cases, and of the one with 1,000.

For each: requests per second, p50 and p99 latency, and the server's CPU per request (its
utime + stime from /proc over the run, divided by the requests). Goals (issue 12): a signed-in
page costs at most 1.5x the anonymous page's CPU, and the dashboard with 1,000 cases serves at
least 80 % of the rate of the one with 10.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from common import (
    PASSWORD,
    Load,
    Spy,
    bench_settings,
    in_app_context,
    serving,
    sign_in,
    top_of,
    wrk,
)

FEW, MANY = 10, 1000
SIGNED_IN_CPU_CEILING = 1.5  # x the anonymous page
MANY_CASES_RATE_FLOOR = 0.80  # x the rate with few cases


async def _people(var_dir: Path) -> None:
    from core import context
    from core.accounts import service as accounts
    from core.cases import service as cases

    async def make() -> None:
        general = context.plugins().specialty("general")
        for email, count in ((f"few@{FEW}.example", FEW), (f"many@{MANY}.example", MANY)):
            await accounts.register_patient(
                email=email, password=PASSWORD, full_name="Bench", phone="", country="PK", ip=None
            )
            patient = await accounts.get_user_by_email(email)
            for _ in range(count):
                await cases.start_request(patient, general, ip=None)

    await in_app_context(bench_settings(var_dir), make)


def row(name: str, load: Load) -> str:
    return (
        f"| {name} | {load.rate:,.0f} | {load.p50_ms:.1f} | {load.p99_ms:.1f} | "
        f"{load.cpu_ms_per_request:.2f} | {load.non_2xx} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--spy", type=Path, default=None, help="py-spy the server, per target")
    args = parser.parse_args()
    if args.spy:
        args.spy.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="consilium-pages-") as folder:
        var_dir = Path(folder) / "var"
        print(f"seeding two patients ({FEW} and {MANY} cases)…", flush=True)
        asyncio.run(_people(var_dir))
        with serving(var_dir, Path(folder) / "server.log") as (base_url, server):
            few = sign_in(base_url, f"few@{FEW}.example")
            many = sign_in(base_url, f"many@{MANY}.example")
            wrk(f"{base_url}/", server.pid, seconds=2)  # warm up (imports, templates)
            targets = {
                "anonymous home page": ("/", ""),
                "static file": ("/static/app.css", ""),
                f"dashboard, {FEW} cases": ("/dashboard", few),
                f"dashboard, {MANY:,} cases": ("/dashboard", many),
            }
            loads = {}
            for number, (name, (path, cookie)) in enumerate(targets.items()):
                with Spy(args.spy, server.pid, f"target-{number}", gil=True):
                    loads[name] = wrk(
                        base_url + path, server.pid, seconds=args.seconds, cookie=cookie
                    )
    print("\n| target | req/s | p50 ms | p99 ms | server CPU ms/req | non-2xx |")
    print("|---|---|---|---|---|---|")
    for name, load in loads.items():
        print(row(name, load))
    home = loads["anonymous home page"]
    dash_few, dash_many = loads[f"dashboard, {FEW} cases"], loads[f"dashboard, {MANY:,} cases"]
    cpu_ratio = dash_few.cpu_ms_per_request / home.cpu_ms_per_request
    rate_ratio = dash_many.rate / dash_few.rate
    cpu_met = "met" if cpu_ratio <= SIGNED_IN_CPU_CEILING else "MISSED"
    rate_met = "met" if rate_ratio >= MANY_CASES_RATE_FLOOR else "MISSED"
    print(
        f"\nsigned-in page CPU / anonymous page CPU: {cpu_ratio:.2f} "
        f"(goal <= {SIGNED_IN_CPU_CEILING}): {cpu_met}"
    )
    print(
        f"dashboard req/s with {MANY:,} cases / with {FEW}: {rate_ratio:.2f} "
        f"(goal >= {MANY_CASES_RATE_FLOOR}): {rate_met}"
    )
    for number, name in enumerate(loads):
        profile = args.spy / f"target-{number}.txt" if args.spy else None
        if profile is not None and profile.exists():
            print(f"\nWhere the server's time went, {name} (py-spy, self share):")
            for own, total, frame in top_of(profile, 12):
                print(f"  {own:6.1%} (with callees {total:6.1%})  {frame}")


if __name__ == "__main__":
    main()
