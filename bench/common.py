"""What the benchmarks share: a server in a subprocess, its CPU and memory, wrk, people.

Not a test module: benchmarks print figures (see bench/README.md).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
PASSWORD = "correct horse battery staple"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(var_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSILIUM_")}
    env.pop("DATABASE_URL", None)
    env.update(
        CONSILIUM_VAR_DIR=str(var_dir),
        CONSILIUM_SECRET_KEY=SECRET,
        CONSILIUM_BASE_URL=f"http://127.0.0.1:{port}",
        CONSILIUM_OUTBOX_POLL_SECONDS="60",
        CONSILIUM_LOGIN_RATE_PER_MINUTE="100000",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def bench_settings(var_dir: Path, **overrides: Any) -> Any:
    from core.settings import Settings

    values = {"var_dir": var_dir, "secret_key": SECRET, **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def in_app_context(settings: Any, work: Callable[[], Awaitable[T]]) -> T:
    """Migrate the database of `settings` and run `work()` with an app context current, as a
    command would (core/commands.py), in the caller's event loop."""
    from core import context, db
    from core.app import build_context

    db.configure_database(settings)
    with contextlib.redirect_stdout(io.StringIO()):  # Piccolo prints every migration
        await db.run_migrations()
    app_context = build_context(settings)
    with context.use(app_context):
        await db.start_pool(settings)
        try:
            return await work()
        finally:
            await db.close_pool()
            await app_context.aclose()


def start_server(
    var_dir: Path, port: int, log: Path, *, app: str = "core.app:create_app", **env: str
) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with open(log, "wb") as output:
        return subprocess.Popen(
            command,
            env=server_env(var_dir, port, **env),
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def wait_ready(base_url: str, server: subprocess.Popen, log: Path, path: str = "/login") -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not start within 60 s")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@contextlib.contextmanager
def serving(var_dir: Path, log: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    server = start_server(var_dir, port, log, **env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, server, log)
        yield base_url, server
    finally:
        stop_server(server)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def sign_in(base_url: str, email: str, password: str = PASSWORD) -> str:
    """A signed-in browser's Cookie header (session and CSRF cookies)."""
    import httpx

    with httpx.Client(base_url=base_url) as client:
        client.get("/login")
        token = next(c.value for c in client.cookies.jar if c.name.endswith("csrftoken"))
        response = client.post(
            "/login", data={"email": email, "password": password}, headers={"x-csrftoken": token}
        )
        if response.status_code != 303 or response.headers["location"].startswith("/login"):
            raise SystemExit(f"sign-in failed: {response.status_code} {response.text[:300]}")
        return "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)


@dataclass
class Load:
    """What wrk measured, and the server's CPU seconds over the same run."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu: float
    non_2xx: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.server_cpu / max(self.requests, 1)


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, pid: int, *, seconds: int = 10, connections: int = 16, cookie: str = "") -> Load:
    """`connections` concurrent clients on one wrk thread (the other core serves)."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if cookie:
        command[1:1] = ["-H", f"Cookie: {cookie}"]
    before = cpu_seconds(pid)
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pid) - before
    requests = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", output).group(1))  # type: ignore[union-attr]
    duration = re.search(r"requests in ([\d.]+)(ms|s|m)", output)
    seconds_taken = float(duration.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[duration.group(2)]  # type: ignore[union-attr]
    latency = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)\s*$", output, re.M))
    if "50" not in latency:
        raise SystemExit(f"wrk printed no latency distribution:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return Load(
        requests=requests,
        seconds=seconds_taken,
        p50_ms=_ms(latency["50"]),
        p99_ms=_ms(latency["99"]),
        server_cpu=cpu,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


class Spy:
    """py-spy recording the server while a block runs (``--spy DIR``), as collapsed stacks."""

    def __init__(self, folder: Path | None, pid: int, name: str, *, gil: bool = False) -> None:
        self.command = None
        if folder is not None:
            beside = Path(sys.executable).parent / "py-spy"  # pip install py-spy, in the venv
            executable = os.environ.get("PY_SPY") or shutil.which("py-spy") or str(beside)
            output = folder / f"{name}.txt"
            self.command = [executable, "record", "--pid", str(pid), "--rate", "250"]
            self.command += ["--format", "raw", "--nonblocking", "--output", str(output)]
            if gil:  # only the thread holding the GIL: Python's own work, no idle waits
                self.command.append("--gil")
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Spy:
        if self.command:
            self.process = subprocess.Popen(
                self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(1.0)  # attached before the transfer starts
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=60)


def top_of(collapsed: Path, count: int = 15) -> list[tuple[float, float, str]]:
    """The lines that ran most in a py-spy raw (collapsed stacks) file: (self share, total
    share, frame), by self share. A frame is "function (file:line)"; idle frames are left out
    unless py-spy recorded them (--idle)."""
    own: dict[str, int] = {}
    anywhere: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        frames = stack.split(";")
        weight = int(samples)
        total += weight
        own[frames[-1]] = own.get(frames[-1], 0) + weight
        for frame in set(frames):
            anywhere[frame] = anywhere.get(frame, 0) + weight
    ranked = sorted(own.items(), key=lambda item: -item[1])[:count]
    return [(n / total, anywhere[frame] / total, frame) for frame, n in ranked] if total else []
