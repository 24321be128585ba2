from piccolo.columns import Integer, Text, Timestamptz, Varchar
from piccolo.table import Table


class ScheduledJob(Table, tablename="schedule_job"):
    """One periodic job: when it is next due, who holds it now (a lease that expires if that
    process dies) and how its last run went. One row per job name; the jobs themselves are
    declared in code (core/app.py)."""

    name = Varchar(length=64, unique=True)
    next_run_at = Timestamptz()
    lease_until = Timestamptz(null=True, default=None)
    leased_by = Varchar(length=40, default="")
    runs = Integer(default=0)
    failures = Integer(default=0)  # in a row; 0 after a run that worked
    last_started_at = Timestamptz(null=True, default=None)
    last_finished_at = Timestamptz(null=True, default=None)
    last_status = Varchar(length=10, default="never")  # never | ok | failed
    last_handled = Integer(default=0)  # items the last run handled
    last_error = Text(default="")  # the exception's type only: messages may quote data
