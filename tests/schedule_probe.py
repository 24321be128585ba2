"""One app process's scheduler pass, for tests/test_schedule.py: waits until the agreed start
time, runs what is due, and appends its pid to a file each time the probe job runs."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import timedelta

from core import commands
from core.schedule.service import Periodic, Scheduler
from core.settings import load_settings


def main() -> None:
    out, start_at = sys.argv[1], float(sys.argv[2])

    async def probe() -> int:
        with open(out, "a") as file:
            file.write(f"{os.getpid()}\n")
        await asyncio.sleep(0.5)  # long enough for the other process to try meanwhile
        return 1

    async def work() -> None:
        scheduler = Scheduler([Periodic("probe", timedelta(hours=1), probe)])
        await scheduler.ensure_rows()
        await asyncio.sleep(max(0.0, start_at - time.time()))
        await scheduler.run_due()

    commands.run(load_settings(), work)


if __name__ == "__main__":
    main()
