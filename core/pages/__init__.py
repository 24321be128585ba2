"""Pages that put several domains together (a case with its records, payment and timeline;
the request wizard with its fee; the staff queues). They sit above every domain; a domain's own
actions answer from its routes.py."""

from core.pages import (
    attention,
    case,
    doctor,
    doctor_requests,
    home,
    report,
    requests,
    review,
    shared_report,
    staff,
)

ROUTES = [
    *home.ROUTES,
    *requests.ROUTES,
    *case.ROUTES,
    *staff.ROUTES,
    *doctor.ROUTES,
    *review.ROUTES,
    *doctor_requests.ROUTES,
    *attention.ROUTES,
    *report.ROUTES,
    *shared_report.ROUTES,
]
