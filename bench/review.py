"""The doctor's review workspace with a large study. Not a test: it prints figures.

    .venv/bin/python bench/review.py                  # 3,000 images, 40 requests per target
    .venv/bin/python bench/review.py --images 500     # a quick run

The app runs under uvicorn in a subprocess (SQLite and local files in a temporary var dir), as
`make run` serves it. Beforehand, through the services and direct rows: a radiologist (with
TOTP), a radiology case accepted by them, holding one CT study of `--images` DICOM files in 6
series (document rows with the facts the radiology plugin stores; the pages read no file
content) and the original report. The radiologist signs in with their password and a code.

Timed one request after the other (what one doctor waits for), `--requests` each:

- the ceiling: the doctor's case page `/doctor/cases/<uid>` — the same case, its records shown
  a page of 50 lines at a time;
- the workspace `GET /doctor/cases/<uid>/review`: the case, the records and the review form,
  whose "What you reviewed" lists every series of the study (every file's facts are read);
- an autosave `POST …/review/autosave` (what each pause in typing sends), each based on the
  version the previous one returned.

Goals (issue 15): the workspace's p50 at most 3x the case page's with 3,000 images, and an
autosave's p50 at most the case page's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import PASSWORD, bench_settings, in_app_context, serving

WORKSPACE_CEILING = 3.0  # x the case page's p50
AUTOSAVE_CEILING = 1.0
SERIES = 6
DOCTOR = "radiologist@bench.example"


async def _seed(var_dir: Path, images: int) -> tuple[str, str]:
    """The accepted case's uid and the doctor's TOTP secret."""
    import pyotp

    from core import clock, context
    from core.accounts import second_factor
    from core.accounts import service as accounts
    from core.accounts.tables import DoctorProfile
    from core.assignment.tables import Offer
    from core.cases import service as cases
    from core.cases.tables import Case
    from core.documents.tables import Document

    async def make() -> tuple[str, str]:
        radiology = context.plugins().specialty("radiology")
        doctor = await accounts.create_staff(
            email=DOCTOR,
            full_name="Dr Bench",
            role="doctor",
            specialties=["radiology"],
            known_specialties={s.slug for s in context.plugins().specialties()},
            by=None,
            password=PASSWORD,
        )
        secret = second_factor.new_secret()
        step = int(time.time() // 30) - 1
        await second_factor.enable(doctor, secret, pyotp.TOTP(secret).generate_otp(step), ip=None)
        await DoctorProfile.insert(DoctorProfile(doctor=doctor.id, title="Consultant"))
        await accounts.register_patient(
            email="patient@bench.example",
            password=PASSWORD,
            full_name="Bench Patient",
            phone="",
            country="PK",
            ip=None,
        )
        patient = await accounts.get_user_by_email("patient@bench.example")
        case = await cases.start_request(patient, radiology, ip=None)
        await Case.update(
            {
                Case.status: "assigned",
                Case.assigned_doctor: doctor.id,
                Case.questions: json.dumps(["Is the nodule new?", "Do I need a biopsy?"]),
                Case.subject_kind: "self",
            }
        ).where(Case.id == case.id)
        await Offer.insert(
            Offer(case=case.id, doctor=doctor.id, status="accepted", respond_by=clock.now())
        )
        study = "1.2.826.0.1.3680043.2.1125." + "1" * 20
        rows = [
            Document(
                uid=uuid.uuid4(),
                case=case.id,
                storage_key=uuid.uuid4().hex,
                display_name="report.pdf",
                kind="pdf",
                status="complete",
                checklist_item="report",
            )
        ]
        for number in range(images):
            series = number % SERIES + 1
            facts = {
                "study_uid": study,
                "series_uid": f"{study}.{series}",
                "sop_instance_uid": f"{study}.{series}.{number}",
                "modality": "CT",
                "series_number": str(series),
                "series_description": f"AX {series} mm",
                "instance_number": str(number // SERIES + 1),
                "study_date": "2026-10-02",
                "group": study,
                "group_label": "CT chest, 2 Oct 2026",
            }
            rows.append(
                Document(
                    uid=uuid.uuid4(),
                    case=case.id,
                    storage_key=uuid.uuid4().hex,
                    display_name=f"IM{number:05d}.dcm",
                    kind="dicom",
                    status="complete",
                    checklist_item="images",
                    facts=json.dumps(facts),
                    group_key=study,
                )
            )
        for start in range(0, len(rows), 500):
            await Document.insert(*rows[start : start + 500])
        return str(case.uid), secret

    return await in_app_context(bench_settings(var_dir), make)


def _sign_in(client, secret: str) -> None:
    import pyotp

    client.get("/login")
    token = client.cookies.get("csrftoken") or next(
        c.value for c in client.cookies.jar if c.name.endswith("csrftoken")
    )
    response = client.post(
        "/login", data={"email": DOCTOR, "password": PASSWORD}, headers={"x-csrftoken": token}
    )
    assert response.headers["location"].startswith("/login/code"), response.text[:300]
    code = pyotp.TOTP(secret).now()
    response = client.post("/login/code", data={"code": code}, headers={"x-csrftoken": token})
    assert response.status_code == 303 and "/login" not in response.headers["location"]


def _time(call, count: int) -> list[float]:
    took = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        took.append((time.perf_counter() - start) * 1000)
    return took


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()

    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        var_dir = Path(tmp)
        started = time.perf_counter()
        uid, secret = asyncio.run(_seed(var_dir, args.images))
        print(f"seeded {args.images:,} images in {time.perf_counter() - started:.1f} s")
        with serving(var_dir, var_dir / "server.log") as (base_url, _server):
            with httpx.Client(base_url=base_url, timeout=60) as client:
                _sign_in(client, secret)
                token = next(c.value for c in client.cookies.jar if c.name.endswith("csrftoken"))
                case_page = f"/doctor/cases/{uid}"
                review = f"{case_page}/review"
                first = client.get(review)
                assert first.status_code == 200, first.text[:500]
                series = len(re.findall(r'value="series:', first.text))
                print(f"workspace lists {series} series to tick, {len(first.text):,} bytes")
                version = {"n": 0}

                def autosave() -> None:
                    response = client.post(
                        f"{review}/autosave",
                        data={"version": str(version["n"]), "findings": "x" * 2000},
                        headers={"x-csrftoken": token, "hx-request": "true"},
                    )
                    assert response.status_code == 200, response.text[:300]
                    version["n"] += 1

                for _ in range(3):  # warm both pages
                    client.get(case_page)
                    client.get(review)
                results = {
                    "case page (ceiling)": _time(lambda: client.get(case_page), args.requests),
                    "workspace": _time(lambda: client.get(review), args.requests),
                    "autosave": _time(autosave, args.requests),
                }
        print(f"{'target':<22}{'p50 ms':>10}{'p99 ms':>10}")
        for name, took in results.items():
            print(f"{name:<22}{statistics.median(took):>10.1f}{_p(took, 99):>10.1f}")
        ceiling = statistics.median(results["case page (ceiling)"])
        workspace = statistics.median(results["workspace"]) / ceiling
        save = statistics.median(results["autosave"]) / ceiling
        print(
            f"workspace / case page: {workspace:.2f}x (goal ≤ {WORKSPACE_CEILING}x) "
            f"{'OK' if workspace <= WORKSPACE_CEILING else 'OVER'}"
        )
        print(
            f"autosave / case page: {save:.2f}x (goal ≤ {AUTOSAVE_CEILING}x) "
            f"{'OK' if save <= AUTOSAVE_CEILING else 'OVER'}"
        )


if __name__ == "__main__":
    main()
