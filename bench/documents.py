"""Records over HTTP against the same server's ceiling. Not a test: it prints figures.

    .venv/bin/python bench/documents.py                      # 10M, 200M and 2G
    .venv/bin/python bench/documents.py --sizes 10M,200M     # a quick run
    .venv/bin/python bench/documents.py --sizes 2G --profile /tmp/prof   # server under cProfile

The app runs under uvicorn in a subprocess (``--no-access-log``; SQLite and the local store in
a temporary var dir, a patient and a case created beforehand through the service layer). The
server's ASGI app is a small wrapper defined here: ``/bench/discard`` reads a request body and
throws it away (the HTTP ceiling: the same client, bytes and server, no application work) and
``/bench/source`` streams bytes from memory (the download counterpart); every other path goes
to ``create_app(settings)``. Nothing in core is changed.

For each size, one file of random bytes starting with ``%PDF-1.7\\n`` is generated once and
streamed from disk by a generator body (httpx, Content-Length set as a browser would):

(a) upload: multipart POST to ``/cases/<uid>/documents/`` with the ``x-csrftoken`` header,
    signed in as the patient; timed until the response (the object is fsynced and committed);
(b) download: GET of the stored document, SHA-256 checked against the source;
(c) ceiling: the same multipart bytes POSTed to ``/bench/discard``;
(d) in-process seal+write: ``Sealer`` + ``LocalStore.open_write`` on the same bytes, same disk
    (and a plain write+fsync of the same bytes, for comparison);
(e) the crypto ceiling, in the server process (``/bench/crypto``): SHA-256 and sealing of the
    same number of bytes from memory, then opening them with the hash (up to 512 MiB).

Goals (issue 12): an upload reaches 75 % of the lower of the HTTP ceiling (c) and the sealing
ceiling (e), a download 75 % of the lower of the GET ceiling and the opening ceiling.

The server's RSS (``/proc/<pid>/status`` VmRSS) is sampled every 50 ms in a thread during each
transfer; growth is the peak minus the value just before the transfer. Sizes: M = MiB,
G = GiB; rates are MB/s = 10^6 bytes per second.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MIB = 1 << 20
CHUNK = MIB  # client body generator and in-process writes
PDF_HEAD = b"%PDF-1.7\n"
BOUNDARY = "----consilium-bench-boundary"
SECRET = "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
EMAIL = "bench-patient@example.com"
PASSWORD = "correct horse battery staple"
# Of the lower of the HTTP ceiling and the crypto ceiling (issue 12): a sealed upload cannot be
# faster than hashing and sealing its bytes on the server's core, nor than HTTP.
UPLOAD_TARGET = 0.75
DOWNLOAD_TARGET = 0.75
RSS_TARGET = 64 * MIB  # growth during a 2 GiB transfer


# The server side: a wrapper ASGI app (imported by uvicorn in the subprocess) -------------------


async def _discard(scope: dict[str, Any], receive: Any, send: Any) -> None:
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = str(received).encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_SOURCE_BLOCK = bytes(MIB)


async def _source(scope: dict[str, Any], receive: Any, send: Any) -> None:
    query = dict(part.split(b"=", 1) for part in scope["query_string"].split(b"&") if b"=" in part)
    size = int(query.get(b"bytes", b"0"))
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(size).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    block = memoryview(_SOURCE_BLOCK)
    while size > len(block):
        size -= len(block)
        await send({"type": "http.response.body", "body": block, "more_body": True})
    await send({"type": "http.response.body", "body": block[:size]})


async def _crypto(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The crypto ceiling, in the server process: SHA-256 and AES-GCM sealing of `bytes` from
    memory (what an upload must do to every byte), then opening them again with the hash (what
    a download does); no network, no disk. Answers "seal_seconds open_seconds"."""
    from core.documents.sealing import Opener, Sealer, new_data_key, new_file_id

    query = dict(part.split(b"=", 1) for part in scope["query_string"].split(b"&") if part)
    size = int(query.get(b"bytes", b"0"))
    key, file_id = new_data_key(), new_file_id()
    block = memoryview(_SOURCE_BLOCK)
    sealed = bytearray()
    started = time.perf_counter()
    sealer = Sealer(key, file_id)
    left = size
    while left > 0:
        piece = block[: min(left, len(block))]
        for out in sealer.update(piece):
            sealed += out
        left -= len(piece)
    sealed += sealer.finalize()
    sealer.sha256_hex()
    sealing = time.perf_counter() - started
    started = time.perf_counter()
    opener = Opener(key, file_id, compute_sha256=True)
    view = memoryview(sealed)
    for offset in range(0, len(view), CHUNK):
        opener.update(view[offset : offset + CHUNK])
    opener.finalize()
    opener.sha256_hex()
    opening = time.perf_counter() - started
    body = f"{sealing} {opening}".encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def bench_app() -> Any:
    """uvicorn factory: the real app, plus the two bench routes in front of it."""
    from core.app import create_app
    from core.settings import load_settings

    inner = create_app(load_settings())

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/bench/discard":
            await _discard(scope, receive, send)
        elif scope["type"] == "http" and scope["path"] == "/bench/source":
            await _source(scope, receive, send)
        elif scope["type"] == "http" and scope["path"] == "/bench/crypto":
            await _crypto(scope, receive, send)
        else:
            await inner(scope, receive, send)

    return app


# The client side --------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    text = text.strip().upper()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1:] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def label(size: int) -> str:
    if size % (1 << 30) == 0:
        return f"{size >> 30}G"
    if size % (1 << 20) == 0:
        return f"{size >> 20}M"
    return str(size)


def generate(path: Path, sizes: list[int]) -> dict[int, str]:
    """Random bytes (PDF magic first) for the largest size; SHA-256 of every prefix wanted."""
    digest = hashlib.sha256()
    hashes: dict[int, str] = {}
    wanted = sorted(set(sizes))
    written = 0
    with open(path, "wb") as out:
        for boundary in wanted:
            while written < boundary:
                block = os.urandom(min(16 * MIB, boundary - written))
                if written == 0:
                    block = PDF_HEAD + block[len(PDF_HEAD) :]
                out.write(block)
                digest.update(block)
                written += len(block)
            hashes[boundary] = digest.copy().hexdigest()
    return hashes


def multipart_parts(filename: str) -> tuple[bytes, bytes, str]:
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: application/pdf\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return head, tail, f"multipart/form-data; boundary={BOUNDARY}"


def body_from_file(
    path: Path, size: int, head: bytes, tail: bytes, sent: list[float]
) -> Iterator[bytes]:
    """The multipart body, read from disk a MiB at a time; notes when the last byte went."""
    yield head
    remaining = size
    with open(path, "rb") as source:
        while remaining:
            block = source.read(min(CHUNK, remaining))
            if not block:
                raise RuntimeError("source file is shorter than expected")
            remaining -= len(block)
            yield block
    yield tail
    sent.append(time.perf_counter())  # runs when httpx asks for more: the tail was sent


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Peak VmRSS of a process, sampled every 50 ms in a thread while the block runs."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid, self.interval = pid, interval
        self.baseline = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self) -> RssSampler:
        self.baseline = self.peak = rss_bytes(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


@dataclass
class Transfer:
    seconds: float
    size: int
    rss_growth: int
    cpu: float  # server CPU seconds during the transfer
    tail: float = 0.0  # upload: seconds from the last byte sent to the response

    @property
    def rate(self) -> float:
        return self.size / self.seconds / 1e6


@dataclass
class Row:
    size: int
    upload: Transfer | None = None
    download: Transfer | None = None
    ceiling: Transfer | None = None
    source: Transfer | None = None
    seal_write: float = 0.0
    plain_write: float = 0.0
    crypto_seal: float = 0.0  # MB/s: SHA-256 + sealing in the server process, in memory
    crypto_open: float = 0.0  # MB/s: opening + SHA-256, likewise
    notes: list[str] = field(default_factory=list)


def timed(
    pid: int, size: int, action: Any, spy: Path | None = None, name: str = ""
) -> tuple[Transfer, Any]:
    from common import Spy

    with Spy(spy, pid, name):
        cpu_before = cpu_seconds(pid)
        with RssSampler(pid) as sampler:
            start = time.perf_counter()
            result = action()
            end = time.perf_counter()
        cpu = cpu_seconds(pid) - cpu_before
    return Transfer(end - start, size, sampler.growth, cpu), result


# In-process sealing -------------------------------------------------------------------------------


async def _seal_write(store: Any, source: Any, size: int, sealed: bool) -> None:
    from core.documents.sealing import Sealer, new_data_key, new_file_id

    sealer = Sealer(new_data_key(), new_file_id()) if sealed else None
    key = f"bench{os.getpid()}{'s' if sealed else 'p'}"
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    try:
        async with store.open_write(key) as writer:
            remaining = size
            while remaining:
                got = source.readinto(view[: min(CHUNK, remaining)])
                remaining -= got
                if sealer is None:
                    await writer.write(view[:got])
                    continue
                for piece in sealer.update(view[:got]):
                    await writer.write(piece)
            if sealer is not None:
                await writer.write(sealer.finalize())
    finally:
        await store.delete(key)


def in_process_rate(var_dir: Path, path: Path, size: int, sealed: bool) -> float:
    from core.documents.storage import LocalStore

    store = LocalStore(var_dir / "documents")
    with open(path, "rb", buffering=0) as source:
        start = time.perf_counter()
        asyncio.run(_seal_write(store, source, size, sealed))
        seconds = time.perf_counter() - start
    return size / seconds / 1e6


# Set-up ------------------------------------------------------------------------------------------


def server_env(var_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSILIUM_")}
    env.pop("DATABASE_URL", None)
    env.update(
        CONSILIUM_VAR_DIR=str(var_dir),
        CONSILIUM_SECRET_KEY=SECRET,
        CONSILIUM_BASE_URL=f"http://127.0.0.1:{port}",
        CONSILIUM_OUTBOX_POLL_SECONDS="60",
        PYTHONPATH=str(ROOT),
    )
    return env


async def prepare(var_dir: Path) -> str:
    """Migrate, create a patient and a draft case (service layer); return the case's uid."""
    from common import bench_settings, in_app_context

    from core import context
    from core.accounts import service as accounts
    from core.cases import service as cases

    async def make() -> str:
        await accounts.register_patient(
            email=EMAIL,
            password=PASSWORD,
            full_name="Bench Patient",
            phone="",
            country="PK",
            ip=None,
        )
        patient = await accounts.get_user_by_email(EMAIL)
        specialty = context.plugins().specialty("general")
        assert patient is not None and specialty is not None
        case = await cases.start_request(patient, specialty, ip=None)
        return str(case.uid)

    return await in_app_context(bench_settings(var_dir), make)


async def newest_document_uid() -> str:
    from core.documents.tables import Document

    row = await Document.select(Document.uid).order_by(Document.id, ascending=False).first()
    assert row is not None
    return str(row["uid"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(var_dir: Path, port: int, log: Path, profile: Path | None) -> subprocess.Popen:
    command = [sys.executable]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile / "server.prof")]
    command += [
        "-m",
        "uvicorn",
        "--app-dir",
        str(Path(__file__).resolve().parent),
        "--factory",
        "documents:bench_app",
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
            command, env=server_env(var_dir, port), stdout=output, stderr=subprocess.STDOUT
        )


def sign_in(client: Any) -> str:
    client.get("/login")
    token = next(c.value for c in client.cookies.jar if c.name.endswith("csrftoken"))
    response = client.post(
        "/login", data={"email": EMAIL, "password": PASSWORD}, headers={"x-csrftoken": token}
    )
    if response.status_code != 303 or response.headers["location"].startswith("/login"):
        raise SystemExit(f"sign-in failed: {response.status_code} {response.text[:300]}")
    return next(c.value for c in client.cookies.jar if c.name.endswith("csrftoken"))


# The run ------------------------------------------------------------------------------------------


def run(sizes: list[int], work_dir: Path, profile: Path | None, spy: Path | None) -> list[Row]:
    import httpx

    var_dir = work_dir / "var"
    source = work_dir / "source.bin"
    print(f"generating {label(max(sizes))} of random bytes in {work_dir} …", flush=True)
    hashes = generate(source, sizes)
    case_uid = asyncio.run(prepare(var_dir))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = work_dir / "server.log"
    server = start_server(var_dir, port, log, profile)
    rows = []
    try:
        from common import stop_server, wait_ready

        wait_ready(base_url, server, log)
        with httpx.Client(base_url=base_url, timeout=httpx.Timeout(600.0)) as client:
            bench = Bench(client, server.pid, source, var_dir, case_uid, sign_in(client), spy)
            for size in sizes:
                rows.append(bench.measure(size, hashes[size]))
    finally:
        stop_server(server)
    return rows


@dataclass
class Bench:
    client: Any  # httpx.Client, signed in as the patient
    pid: int  # the server's
    source: Path
    var_dir: Path
    case_uid: str
    token: str  # CSRF
    spy: Path | None

    def post(self, path: str, size: int, name: str) -> Transfer:
        head, tail, content_type = multipart_parts(f"scan-{label(size)}.pdf")
        headers = {
            "content-type": content_type,
            "content-length": str(len(head) + size + len(tail)),
            "x-csrftoken": self.token,
            "x-upload-client": "bench",
        }
        sent: list[float] = []
        answered: list[float] = []

        def send() -> Any:
            body = body_from_file(self.source, size, head, tail, sent)
            answer = self.client.post(path, content=body, headers=headers)
            answered.append(time.perf_counter())
            return answer

        transfer, answer = timed(self.pid, size, send, self.spy, f"{name}-{label(size)}")
        if answer.status_code not in (200, 201):
            raise SystemExit(f"POST {path}: {answer.status_code} {answer.text[:500]}")
        if path == "/bench/discard" and int(answer.text) != len(head) + size + len(tail):
            raise SystemExit(f"the discard endpoint counted {answer.text} bytes")
        transfer.tail = answered[0] - sent[0]
        return transfer

    def get(self, path: str, size: int, name: str, expected: str | None) -> Transfer:
        def fetch() -> tuple[int, str | None]:
            digest = hashlib.sha256() if expected else None
            count = 0
            with self.client.stream("GET", path) as response:
                response.raise_for_status()
                for block in response.iter_raw(CHUNK):
                    if digest is not None:
                        digest.update(block)
                    count += len(block)
            return count, digest.hexdigest() if digest is not None else None

        transfer, (count, digest) = timed(self.pid, size, fetch, self.spy, f"{name}-{label(size)}")
        if count != size or digest != expected:
            raise SystemExit(f"GET {path} did not return what was sent")
        return transfer

    def measure(self, size: int, sha256: str) -> Row:
        from core.documents.tables import Document

        row = Row(size)
        print(f"{label(size)}: ceiling …", flush=True)
        row.ceiling = self.post("/bench/discard", size, "ceiling")
        print(f"{label(size)}: upload …", flush=True)
        row.upload = self.post(f"/cases/{self.case_uid}/documents/", size, "upload")
        doc = asyncio.run(
            Document.select(Document.uid, Document.storage_key, Document.sha256)
            .order_by(Document.id, ascending=False)
            .first()
            .run()
        )
        assert doc is not None and doc["sha256"] == sha256
        print(f"{label(size)}: download …", flush=True)
        path = f"/cases/{self.case_uid}/documents/{doc['uid']}"
        row.download = self.get(path, size, "download", sha256)
        row.source = self.get(f"/bench/source?bytes={size}", size, "source", None)
        print(f"{label(size)}: crypto ceiling in the server …", flush=True)
        crypto_size = min(size, 512 * MIB)  # held in the server's memory while it runs
        seal_s, open_s = map(
            float, self.client.get(f"/bench/crypto?bytes={crypto_size}").text.split()
        )
        row.crypto_seal, row.crypto_open = crypto_size / seal_s / 1e6, crypto_size / open_s / 1e6
        print(f"{label(size)}: in-process seal+write …", flush=True)
        row.seal_write = in_process_rate(self.var_dir, self.source, size, sealed=True)
        row.plain_write = in_process_rate(self.var_dir, self.source, size, sealed=False)
        # Free the disk (and the case's quota) for the next size.
        key = doc["storage_key"]
        (self.var_dir / "documents" / "objects" / key[:2] / key).unlink()
        asyncio.run(Document.delete().where(Document.uid == doc["uid"]).run())
        return row


def mb(value: int) -> str:
    return f"{value / MIB:.1f}"


def report(rows: list[Row]) -> str:
    lines = [
        "| size | upload MB/s | download MB/s | ceiling MB/s | upload / ceiling "
        "| download / ceiling | GET ceiling MB/s | seal+write MB/s | write MB/s "
        "| upload / seal+write | download / GET ceiling |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        up, down, ceil, src = row.upload, row.download, row.ceiling, row.source
        assert up and down and ceil and src
        lines.append(
            f"| {label(row.size)} | {up.rate:,.0f} | {down.rate:,.0f} | {ceil.rate:,.0f} "
            f"| {up.rate / ceil.rate:.0%} | {down.rate / ceil.rate:.0%} | {src.rate:,.0f} "
            f"| {row.seal_write:,.0f} | {row.plain_write:,.0f} "
            f"| {up.rate / row.seal_write:.0%} | {down.rate / src.rate:.0%} |"
        )
    lines += [
        "",
        "| size | server RSS growth (MiB) upload / download / ceiling "
        "| server CPU s per GiB upload / download / ceiling "
        "| upload: last byte sent → response, s |",
        "| --- | --- | --- | --- |",
    ]
    for row in rows:
        up, down, ceil = row.upload, row.download, row.ceiling
        assert up and down and ceil
        per_gib = (1 << 30) / row.size
        lines.append(
            f"| {label(row.size)} | {mb(up.rss_growth)} / {mb(down.rss_growth)} / "
            f"{mb(ceil.rss_growth)} | {up.cpu * per_gib:.2f} / {down.cpu * per_gib:.2f} / "
            f"{ceil.cpu * per_gib:.2f} | {up.tail:.3f} of {up.seconds:.2f} |"
        )
    lines += [
        "",
        "| size | crypto ceiling seal / open MB/s | upload bound MB/s | upload / bound "
        "| download bound MB/s | download / bound |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        up, down, ceil, src = row.upload, row.download, row.ceiling, row.source
        assert up and down and ceil and src
        up_bound, down_bound = min(ceil.rate, row.crypto_seal), min(src.rate, row.crypto_open)
        lines.append(
            f"| {label(row.size)} | {row.crypto_seal:,.0f} / {row.crypto_open:,.0f} "
            f"| {up_bound:,.0f} | {up.rate / up_bound:.0%} | {down_bound:,.0f} "
            f"| {down.rate / down_bound:.0%} |"
        )
    lines.append("")
    for row in rows:
        up, down, ceil, src = row.upload, row.download, row.ceiling, row.source
        assert up and down and ceil and src
        up_bound, down_bound = min(ceil.rate, row.crypto_seal), min(src.rate, row.crypto_open)
        checks = [
            (
                f"upload ≥ {UPLOAD_TARGET:.0%} of min(ceiling, crypto)",
                up.rate >= UPLOAD_TARGET * up_bound,
            ),
            (
                f"download ≥ {DOWNLOAD_TARGET:.0%} of min(GET ceiling, crypto)",
                down.rate >= DOWNLOAD_TARGET * down_bound,
            ),
        ]
        if row.size >= 2 << 30:
            growth = max(up.rss_growth, down.rss_growth)
            checks.append((f"RSS growth < {RSS_TARGET // MIB} MiB", growth < RSS_TARGET))
        verdicts = ", ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in checks)
        lines.append(f"{label(row.size)}: {verdicts}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10M,200M,2G", help="comma-separated, e.g. 10M,200M")
    parser.add_argument("--dir", type=Path, default=None, help="where temp files go (a disk)")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile the server here")
    parser.add_argument(
        "--spy", type=Path, default=None, help="py-spy the server during each transfer, here"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (and log)")
    args = parser.parse_args()
    sizes = [parse_size(part) for part in args.sizes.split(",") if part.strip()]
    for folder in (args.profile, args.spy):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="consilium-bench-", dir=args.dir))
    try:
        rows = run(sizes, work_dir, args.profile, args.spy)
        print()
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; MB = 10^6 bytes")
        print(report(rows))
    finally:
        if args.keep:
            print(f"kept {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
