from piccolo.columns import Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

PENDING, SENT = "pending", "sent"


class OutboxMessage(Table, tablename="notification_outbox"):
    """An email waiting to be sent, written in the same transaction as the change it reports.

    A worker claims a row by setting `claimed_by` and a lease in `claimed_until`; a worker that
    dies mid-send leaves a lease that simply expires, so the message is tried again.
    """

    to_address = Varchar(length=320)
    subject = Varchar(length=300)
    body = Text()  # emptied once sent: links in it (resets, invites) must not outlive delivery
    created_at = Timestamptz(default=TimestamptzNow())
    status = Varchar(length=16, default=PENDING, index=True)
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz(default=TimestamptzNow(), index=True)
    claimed_by = Varchar(length=100, null=True, default=None)
    claimed_until = Timestamptz(null=True, default=None)
    sent_at = Timestamptz(null=True, default=None)
    # Exception class name and SMTP code only: never an address or any text from the message.
    last_error = Varchar(length=200, default="")
