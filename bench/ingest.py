"""A CD of scans, ingested by Consilium and by Orthanc side by side. Not a test: it prints figures.

    .venv/bin/python bench/ingest.py                    # 300 slices, 3 rounds, SQLite
    .venv/bin/python bench/ingest.py --rounds 1 --slices 60
    .venv/bin/python bench/ingest.py --postgres postgresql://postgres@127.0.0.1:5432/postgres

The study is made deterministically with pydicom (no pixel library needed): `--slices` CT
images of 512 x 512 16-bit pixels (about 0.5 MB each; 300 slices are about 158 MB), one study
and one series, new UIDs every round (so neither server can recognise a file it has seen).

Each round, interleaved, both servers start fresh (a new Orthanc storage folder; a new
Consilium case) and take the same files:

- **file by file**: one HTTP request per file, `--parallel` at a time (default 1): Orthanc's
  REST `POST /instances`, Consilium's upload form (`POST /cases/<uid>/documents/`, multipart,
  signed in as the patient, CSRF header) — every byte sealed (AES-256-GCM) and hashed;
- **as one ZIP** of the folder: Orthanc `POST /instances` with the ZIP, Consilium's upload form
  with the ZIP (unpacked, each entry sealed and inspected).

Time is from the first byte sent to the last answer; memory is the server's peak VmRSS
(sampled every 50 ms) during the transfer. Orthanc is Debian's `orthanc` package (1.10), run
here with its own storage folder, no plugins, no authentication, on loopback. Both servers get
the same client (httpx in this process) and the same machine; the report gives medians of the
rounds and the ratios. Goal (issue 12): Consilium ≤ 1.0x Orthanc's time both ways, with less
peak memory.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from common import (
    PASSWORD,
    Spy,
    bench_settings,
    cpu_seconds,
    free_port,
    in_app_context,
    rss_bytes,
    serving,
    sign_in,
    top_of,
)

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
EMAIL = "ingest@bench.example"


# The study -----------------------------------------------------------------------------------


def make_study(folder: Path, slices: int, seed: int) -> list[Path]:
    """`slices` CT images of one study, written as DICOM Part 10 files into `folder`."""
    from pydicom.data import get_testdata_file
    from pydicom.dataset import Dataset
    from pydicom.filereader import dcmread
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rng = random.Random(seed)
    template = dcmread(get_testdata_file("CT_small.dcm"))
    # A few base images (12-bit values: a smooth ramp with noise), shifted per slice: the files
    # differ, and a ZIP compresses them to about 60 %, near what lossless CT gets.
    side = 512
    bases = []
    for b in range(4):
        image = bytearray(side * side * 2)
        image[0::2] = rng.randbytes(side * side)  # the low byte: noise
        row = bytes((x * (b + 3) // 40) % 16 for x in range(side))
        image[1::2] = row * side  # the high byte: a smooth 12-bit ramp
        bases.append(bytes(image))
    study, series = generate_uid(), generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(1, slices + 1):
        ds: Dataset = template.copy()
        ds.file_meta = template.file_meta.copy()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = number
        ds.Rows = ds.Columns = side
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        base = bases[number % len(bases)]
        shift = (number * 2 * 97) % len(base)
        ds.PixelData = base[shift:] + base[:shift]
        path = folder / f"IM{number:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def zip_of(paths: list[Path], target: Path) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in paths:
            archive.write(path, f"CD/{path.name}")
    return target


# Memory ----------------------------------------------------------------------------------------


class PeakRss:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()

    def __enter__(self) -> PeakRss:
        self.start = rss_bytes(self.pid)
        self.peak = self.start
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))


# Orthanc ---------------------------------------------------------------------------------------


class Orthanc:
    def __init__(self, work: Path) -> None:
        self.storage = work / "orthanc-storage"
        self.port = free_port()
        config = {
            "Name": "bench",
            "StorageDirectory": str(self.storage),
            "IndexDirectory": str(self.storage),
            "HttpPort": self.port,
            "DicomPort": free_port(),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [],
            "HttpCompressionEnabled": False,
            "StableAge": 3600,
        }
        self.config = work / "orthanc.json"
        self.config.write_text(json.dumps(config))
        self.log = work / "orthanc.log"
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Orthanc:
        import httpx

        with open(self.log, "wb") as output:
            self.process = subprocess.Popen(
                [ORTHANC, str(self.config)], stdout=output, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/system", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise SystemExit(f"Orthanc did not start:\n{self.log.read_text()[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


# Sending ---------------------------------------------------------------------------------------


async def send_all(posts: list, parallel: int) -> float:
    """Run the request coroutines `parallel` at a time; seconds from first to last answer."""
    queue = list(posts)
    started = time.perf_counter()

    async def worker() -> None:
        while queue:
            await queue.pop(0)()

    await asyncio.gather(*(worker() for _ in range(parallel)))
    return time.perf_counter() - started


async def to_orthanc(url: str, files: list[bytes], parallel: int) -> float:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:

        def post(data: bytes):
            async def run() -> None:
                response = await client.post(
                    "/instances", content=data, headers={"content-type": "application/dicom"}
                )
                assert response.status_code == 200, response.text[:300]

            return run

        return await send_all([post(data) for data in files], parallel)


async def to_orthanc_zip(url: str, archive: bytes) -> float:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        started = time.perf_counter()
        response = await client.post(
            "/instances", content=archive, headers={"content-type": "application/zip"}
        )
        assert response.status_code == 200, response.text[:300]
        return time.perf_counter() - started


def multipart(files: list[tuple[str, bytes, str]]) -> tuple[bytes, str]:
    """One form with these files (name, bytes, media type), as a browser sends it."""
    boundary = "----consilium-bench-ingest"
    body = io.BytesIO()
    for name, data, media in files:
        body.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"'
            f"\r\nContent-Type: {media}\r\n\r\n".encode()
        )
        body.write(data)
        body.write(b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"


async def to_consilium(
    base_url: str,
    cookie: str,
    case_uid: str,
    files: list[tuple[str, bytes, str]],
    parallel: int,
    batch: int = 1,
) -> float:
    """Send `files`, `batch` to a request (upload.js sends 25), `parallel` requests at once."""
    import httpx

    token = next(p.split("=", 1)[1] for p in cookie.split("; ") if p.startswith("csrftoken="))
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as client:

        def post(group: list[tuple[str, bytes, str]]):
            async def run() -> None:
                body, content_type = multipart(group)
                response = await client.post(
                    f"/cases/{case_uid}/documents/",
                    content=body,
                    headers={
                        "content-type": content_type,
                        "x-csrftoken": token,
                        "cookie": cookie,
                        "x-upload-client": "bench",
                    },
                )
                assert response.status_code in (200, 303), (response.status_code, response.text)

            return run

        groups = [files[n : n + batch] for n in range(0, len(files), batch)]
        return await send_all([post(group) for group in groups], parallel)


async def new_case() -> str:
    from core import context
    from core.accounts import service as accounts
    from core.cases import service as cases

    patient = await accounts.get_user_by_email(EMAIL)
    radiology = context.plugins().specialty("radiology")
    case = await cases.start_request(patient, radiology, ip=None)
    return str(case.uid)


async def stored_documents(case_uid: str) -> int:
    from core.cases.tables import Case
    from core.documents.tables import Document

    case = await Case.objects().where(Case.uid == case_uid).first()
    return await Document.count().where(
        (Document.case == case.id) & (Document.status == "complete")
    )


# The run ---------------------------------------------------------------------------------------


@dataclass
class Result:
    seconds: float
    peak_rss: int
    cpu: float = 0.0  # the server's CPU seconds during the transfer


def run(args: argparse.Namespace, work: Path) -> dict[str, list[Result]]:
    var_dir = work / "var"
    extra = {"DATABASE_URL": args.postgres} if args.postgres else {}
    settings = bench_settings(var_dir, database_url=args.postgres or None)

    async def patient() -> None:
        from core.accounts import service as accounts

        await accounts.register_patient(
            email=EMAIL, password=PASSWORD, full_name="Bench", phone="", country="PK", ip=None
        )

    asyncio.run(in_app_context(settings, patient))
    results: dict[str, list[Result]] = {}
    with serving(var_dir, work / "server.log", **extra) as (base_url, server):
        cookie = sign_in(base_url, EMAIL)
        for round_number in range(args.rounds):
            study = make_study(work / f"round{round_number}", args.slices, seed=round_number)
            archive = zip_of(study, work / f"round{round_number}.zip")
            size = sum(p.stat().st_size for p in study)
            # In memory before the clock starts: both servers get the same bytes, at once.
            study_bytes = [(p.name, p.read_bytes()) for p in study]
            archive_bytes = archive.read_bytes()
            print(
                f"round {round_number + 1}: {len(study)} files, {size / 1e6:.0f} MB "
                f"(ZIP {archive.stat().st_size / 1e6:.0f} MB)",
                flush=True,
            )
            for way in ("file by file", "ZIP"):
                shutil.rmtree(work / "orthanc-storage", ignore_errors=True)
                with Orthanc(work) as orthanc, PeakRss(orthanc.process.pid) as memory:
                    cpu = cpu_seconds(orthanc.process.pid)
                    if way == "ZIP":
                        seconds = asyncio.run(to_orthanc_zip(orthanc.url, archive_bytes))
                    else:
                        seconds = asyncio.run(
                            to_orthanc(orthanc.url, [d for _, d in study_bytes], args.parallel)
                        )
                    cpu = cpu_seconds(orthanc.process.pid) - cpu
                results.setdefault(f"Orthanc, {way}", []).append(Result(seconds, memory.peak, cpu))
                case_uid = asyncio.run(in_app_context(settings, new_case))
                files = (
                    [(archive.name, archive_bytes, "application/zip")]
                    if way == "ZIP"
                    else [(name, data, "application/dicom") for name, data in study_bytes]
                )
                name = f"consilium-{'zip' if way == 'ZIP' else 'files'}-{round_number + 1}"
                cpu = cpu_seconds(server.pid)
                with Spy(args.spy, server.pid, name, gil=True), PeakRss(server.pid) as memory:
                    seconds = asyncio.run(
                        to_consilium(base_url, cookie, case_uid, files, args.parallel, args.batch)
                    )
                cpu = cpu_seconds(server.pid) - cpu
                stored = asyncio.run(
                    in_app_context(settings, lambda uid=case_uid: stored_documents(uid))
                )
                assert stored == len(study), f"{way}: {stored} of {len(study)} stored"
                results.setdefault(f"Consilium, {way}", []).append(
                    Result(seconds, memory.peak, cpu)
                )
                print(
                    f"  {way}: Orthanc {results[f'Orthanc, {way}'][-1].seconds:.2f} s, "
                    f"Consilium {seconds:.2f} s",
                    flush=True,
                )
            shutil.rmtree(work / f"round{round_number}")
            archive.unlink()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=1, help="requests at once, file by file")
    parser.add_argument(
        "--batch", type=int, default=1, help="files per Consilium request (upload.js: 25)"
    )
    parser.add_argument("--postgres", default="", help="PostgreSQL URL (a new database is made)")
    parser.add_argument(
        "--spy", type=Path, default=None, help="py-spy the server during Consilium's transfers"
    )
    args = parser.parse_args()
    if args.spy:
        args.spy.mkdir(parents=True, exist_ok=True)
    if not os.path.exists(ORTHANC):
        raise SystemExit("Orthanc is not installed: apt-get install orthanc")
    with tempfile.TemporaryDirectory(prefix="consilium-ingest-") as folder:
        if args.postgres:
            args.postgres = create_database(args.postgres)
        try:
            results = run(args, Path(folder))
        finally:
            if args.postgres:
                drop_database(args.postgres)
    engine = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"\n{engine}, {args.slices} slices, {args.rounds} rounds, parallel {args.parallel}, "
        f"{args.batch} file(s) per Consilium request"
    )
    print(
        "| ingest | median s | server CPU ms per file | peak RSS MB "
        "| vs Orthanc (time) | vs Orthanc (RSS) |"
    )
    print("|---|---|---|---|---|---|")
    for way in ("file by file", "ZIP"):
        ours, theirs = results[f"Consilium, {way}"], results[f"Orthanc, {way}"]
        o_s = statistics.median(r.seconds for r in theirs)
        c_s = statistics.median(r.seconds for r in ours)
        o_m = max(r.peak_rss for r in theirs) / 1e6
        c_m = max(r.peak_rss for r in ours) / 1e6
        o_cpu = statistics.median(r.cpu for r in theirs) * 1000 / args.slices
        c_cpu = statistics.median(r.cpu for r in ours) * 1000 / args.slices
        print(f"| Orthanc, {way} | {o_s:.2f} | {o_cpu:.1f} | {o_m:.0f} | | |")
        print(
            f"| Consilium, {way} | {c_s:.2f} | {c_cpu:.1f} | {c_m:.0f} "
            f"| {c_s / o_s:.2f}x | {c_m / o_m:.2f}x |"
        )
    if args.spy:
        for way in ("files", "zip"):
            profile = args.spy / f"consilium-{way}-{args.rounds}.txt"
            if profile.exists():
                print(f"\nWhere the server's time went, {way} (last round, py-spy, self share):")
                for own, total, frame in top_of(profile):
                    print(f"  {own:6.1%} (with callees {total:6.1%})  {frame}")


def create_database(admin_url: str) -> str:
    import uuid

    import asyncpg

    name = f"consilium_bench_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        connection = await asyncpg.connect(admin_url)
        await connection.execute(f'CREATE DATABASE "{name}"')
        await connection.close()

    asyncio.run(create())
    return f"{admin_url.rsplit('/', 1)[0]}/{name}"


def drop_database(url: str) -> None:
    import asyncpg

    admin_url, name = url.rsplit("/", 1)

    async def drop() -> None:
        connection = await asyncpg.connect(f"{admin_url}/postgres")
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()

    asyncio.run(drop())


if __name__ == "__main__":
    main()
