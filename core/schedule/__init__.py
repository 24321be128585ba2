"""Periodic work inside the app: named jobs run on a schedule that is safe with several app
processes (see core/schedule/service.py)."""
