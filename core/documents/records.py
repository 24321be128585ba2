"""Where records live for one running app (its object store and master keys), and how a
record is refused or not found."""

from __future__ import annotations

from dataclasses import dataclass

from core.documents.keyring import Keyring
from core.documents.storage import LocalStore, ObjectStore, S3Store
from core.errors import NotFound, Refused
from core.formatting import filesize
from core.settings import Settings

COMPLETE, UPLOADING, EXPANDED = "complete", "uploading", "expanded"
READ_CHUNK = 1 << 20
NO_ROOM = (
    "Your files have used all the space we keep for this case or your account. "
    "Please contact us if you need to send more."
)


class UploadRefused(Refused):
    """The upload cannot be accepted; `message` says why, for the person; nothing is kept."""


class DocumentNotFound(NotFound):
    """No such document for this person (it may exist, but they may not read it)."""


@dataclass
class Records:
    """Where records live for one running app: the object store and the master keys."""

    store: ObjectStore
    keyring: Keyring
    settings: Settings

    @classmethod
    def open(cls, settings: Settings) -> Records:
        if settings.master_keys:
            keyring = Keyring.from_env(settings.master_keys)
        else:
            keyring = Keyring.load_or_create(settings.var_dir / "keyring.json")
        store: ObjectStore
        if settings.documents_backend == "s3":
            store = S3Store(
                endpoint_url=settings.s3_endpoint_url,
                bucket=settings.s3_bucket,
                access_key=settings.s3_access_key,
                secret_key=settings.s3_secret_key,
                region=settings.s3_region,
            )
        else:
            store = LocalStore(settings.var_dir / "documents")
        return cls(store=store, keyring=keyring, settings=settings)


def too_large(limit: int) -> UploadRefused:
    most = filesize(limit, decimals=0)
    return UploadRefused(
        status=413, message=f"This file is too large. The most we accept here is {most}."
    )
