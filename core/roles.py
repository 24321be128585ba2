"""Who someone is (their role) and how far they have signed in: names every domain may use.

Web code (core/security.py) enforces them; services decide with them. Kept apart from both so
that services never import web objects.
"""

from __future__ import annotations

PATIENT, DOCTOR, COORDINATOR, ADMIN = "patient", "doctor", "coordinator", "admin"
STAFF_ROLES = (DOCTOR, COORDINATOR, ADMIN)
ROLES = (PATIENT, *STAFF_ROLES)

# How far a session has signed in.
AUTH_FULL = "full"  # signed in, second factor done where required
AUTH_SECOND_FACTOR = "second_factor"  # password ok, TOTP code still needed
AUTH_ENROL = "enrol"  # staff without TOTP yet: may only enrol
