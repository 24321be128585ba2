"""Triage and assignment: which doctor a received case is offered to, their answer, and moving
a case between doctors (see core/assignment/service.py)."""
