"""Master keys, named by id, that wrap the per-file data keys (docs/security.md item 19).

A data key is wrapped with AES-256-GCM under the current master key::

    wrapped = nonce (12 random bytes) ‖ ciphertext of the data key (32) ‖ tag (16)   -> 60 bytes
    associated data = b"consilium-dek" ‖ key id (UTF-8) ‖ file id (16 bytes)

The key id is stored next to the wrapped key (in the database, never in the file), so a
wrapped key copied to another file's row, or relabelled with another key id, fails to unwrap.
Rotating adds a new current master key; older keys stay to unwrap what they wrapped, and
re-wrapping a file's data key rewrites ~60 bytes, no file bytes.

Keys come from a keyring file (JSON ``{"current": id, "keys": {id: base64}}``, mode 0600) or
from an environment variable holding the same JSON (read-only: rotate in the secret store).
``KeyWrapper`` is the interface the rest of the application uses, so a KMS can replace it.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import os
import re
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["KeyWrapper", "Keyring", "KeyringError"]

MASTER_KEY_SIZE = 32
DATA_KEY_SIZE = 32
FILE_ID_SIZE = 16
NONCE_SIZE = 12
WRAPPED_SIZE = NONCE_SIZE + DATA_KEY_SIZE + 16
AAD_LABEL = b"consilium-dek"
ENV_VAR = "CONSILIUM_MASTER_KEYS"
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class KeyringError(Exception):
    """A master key is missing, unusable, or a wrapped key failed authentication."""


@runtime_checkable
class KeyWrapper(Protocol):
    """What the application needs from key management; a KMS client can implement it."""

    def wrap(self, data_key: bytes, *, file_id: bytes) -> tuple[str, bytes]:
        """Wrap a data key for one file; returns (key id, wrapped bytes) to store."""
        ...

    def unwrap(self, key_id: str, wrapped: bytes, *, file_id: bytes) -> bytes:
        """The data key; raises ``KeyringError`` if it cannot be authenticated."""
        ...


def _aad(key_id: str, file_id: bytes) -> bytes:
    # The file id has a fixed length and comes last, so the concatenation is unambiguous.
    return AAD_LABEL + key_id.encode() + file_id


def _check_file_id(file_id: bytes) -> bytes:
    file_id = bytes(file_id)
    if len(file_id) != FILE_ID_SIZE:
        raise ValueError(f"file_id must be {FILE_ID_SIZE} bytes")
    return file_id


def _new_key_id(taken: Mapping[str, bytes]) -> str:
    today = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d")
    while True:
        key_id = f"k-{today}-{secrets.token_hex(2)}"
        if key_id not in taken:
            return key_id


def _parse(text: str, source: str) -> tuple[str, dict[str, bytes]]:
    # Messages name the source but never echo its content: it holds the keys.
    try:
        document = json.loads(text)
    except ValueError:
        raise KeyringError(f"{source} is not valid JSON") from None
    if not isinstance(document, dict) or set(document) != {"current", "keys"}:
        raise KeyringError(f'{source} must be a JSON object {{"current": id, "keys": {{...}}}}')
    current, encoded = document["current"], document["keys"]
    if not isinstance(encoded, dict) or not encoded:
        raise KeyringError(f'{source}: "keys" must map key ids to base64 keys')
    keys: dict[str, bytes] = {}
    for key_id, value in encoded.items():
        if not _KEY_ID.fullmatch(key_id):
            raise KeyringError(f"{source}: invalid key id {key_id!r}")
        try:
            key = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
        except binascii.Error:
            key = b""
        if len(key) != MASTER_KEY_SIZE:
            raise KeyringError(f"{source}: key {key_id!r} is not {MASTER_KEY_SIZE} bytes of base64")
        keys[key_id] = key
    if current not in keys:
        raise KeyringError(f'{source}: "current" must name one of the keys')
    return current, keys


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Keyring:
    """Master keys by id. Satisfies ``KeyWrapper``.

    Build one with ``load_or_create(path)`` (file-backed: ``rotate`` saves at once, so no data
    key is ever wrapped under a key that is not on disk), ``from_env(value)`` (read-only), or
    ``generate()`` (in memory, for tests and tools).
    """

    def __init__(
        self,
        keys: Mapping[str, bytes],
        current_id: str,
        *,
        path: Path | None = None,
        read_only: bool = False,
    ) -> None:
        if current_id not in keys:
            raise KeyringError("current key id is not in the keyring")
        for key_id, key in keys.items():
            if not _KEY_ID.fullmatch(key_id) or len(key) != MASTER_KEY_SIZE:
                raise KeyringError(f"invalid master key {key_id!r}")
        self._keys = {key_id: bytes(key) for key_id, key in keys.items()}
        self._current = current_id
        self.path = path
        self.read_only = read_only
        self._loaded_mtime = path.stat().st_mtime_ns if path is not None and path.exists() else None

    def __repr__(self) -> str:
        return f"<Keyring current={self._current!r} ids={self.ids!r}>"

    @classmethod
    def generate(cls) -> Keyring:
        key_id = _new_key_id({})
        return cls({key_id: AESGCM.generate_key(bit_length=256)}, key_id)

    @classmethod
    def from_env(cls, value: str) -> Keyring:
        """Keys from a ``CONSILIUM_MASTER_KEYS``-style JSON string; read-only."""
        current, keys = _parse(value, ENV_VAR)
        return cls(keys, current, read_only=True)

    @classmethod
    def load_or_create(cls, path: Path) -> Keyring:
        """Load the keyring file, or create it (mode 0600, one new key) if it does not exist."""
        path = Path(path)
        if not path.exists():
            keyring = cls.generate()
            keyring.path = path
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # Created by another process meanwhile: load theirs.
            else:
                try:
                    keyring._write(fd)
                except BaseException:
                    path.unlink(missing_ok=True)
                    raise
                _fsync_dir(path.parent)
                return keyring
        return cls._load(path)

    @classmethod
    def _load(cls, path: Path) -> Keyring:
        fd = os.open(path, os.O_RDONLY)
        with os.fdopen(fd, "r", encoding="utf-8") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise KeyringError(f"keyring {path} is not a regular file")
            if info.st_mode & 0o077:
                mode = stat.S_IMODE(info.st_mode)
                raise KeyringError(
                    f"keyring {path} has mode {mode:04o}: group or others can access it. "
                    f"It holds the master keys; restrict it with `chmod 600 {path}`."
                )
            text = handle.read()
        current, keys = _parse(text, f"keyring {path}")
        return cls(keys, current, path=path)

    @property
    def current_id(self) -> str:
        return self._current

    @property
    def ids(self) -> list[str]:
        return list(self._keys)

    def _refresh(self) -> None:
        """Pick up keys another process added (`consilium keys rotate` while the app runs).

        Keys are only ever added and the file is replaced in one step, so re-reading is safe.
        """
        if self.path is None or not self.path.exists():
            return
        mtime = self.path.stat().st_mtime_ns
        if mtime == self._loaded_mtime:
            return
        fresh = Keyring.load_or_create(self.path)
        self._keys = {**self._keys, **fresh._keys}
        self._current = fresh._current
        self._loaded_mtime = mtime

    def wrap(self, data_key: bytes, *, file_id: bytes) -> tuple[str, bytes]:
        self._refresh()  # wrap new uploads under the newest current key
        data_key = bytes(data_key)
        if len(data_key) != DATA_KEY_SIZE:
            raise ValueError(f"data_key must be {DATA_KEY_SIZE} bytes")
        key_id = self._current
        nonce = os.urandom(NONCE_SIZE)
        sealed = AESGCM(self._keys[key_id]).encrypt(
            nonce, data_key, _aad(key_id, _check_file_id(file_id))
        )
        return key_id, nonce + sealed

    def unwrap(self, key_id: str, wrapped: bytes, *, file_id: bytes) -> bytes:
        master = self._keys.get(key_id)
        if master is None:
            self._refresh()
            master = self._keys.get(key_id)
        if master is None:
            raise KeyringError(f"unknown master key id {key_id!r}")
        wrapped = bytes(wrapped)
        if len(wrapped) != WRAPPED_SIZE:
            raise KeyringError("wrapped data key has the wrong length")
        try:
            return AESGCM(master).decrypt(
                wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:], _aad(key_id, _check_file_id(file_id))
            )
        except InvalidTag:
            raise KeyringError(
                "wrapped data key failed authentication (other file, other key id, or damaged)"
            ) from None

    def rotate(self) -> str:
        """Add a new random master key and make it current; returns its id.

        A file-backed keyring is saved before the new key becomes current.
        """
        if self.read_only:
            raise KeyringError(
                f"master keys come from {ENV_VAR} and are read-only here: rotate them in the "
                f"secret store (add a new key, set it as current) and restart"
            )
        key_id = _new_key_id(self._keys)
        keys = {**self._keys, key_id: AESGCM.generate_key(bit_length=256)}
        previous = self._keys, self._current
        self._keys, self._current = keys, key_id
        if self.path is not None:
            try:
                self.save()
            except BaseException:
                self._keys, self._current = previous
                raise
        return key_id

    def _document(self) -> bytes:
        encoded = {key_id: base64.b64encode(key).decode() for key_id, key in self._keys.items()}
        return json.dumps({"current": self._current, "keys": encoded}, indent=2).encode() + b"\n"

    def _write(self, fd: int) -> None:
        with os.fdopen(fd, "wb") as handle:
            handle.write(self._document())
            handle.flush()
            os.fsync(handle.fileno())

    def save(self) -> None:
        """Write the keyring file atomically: a 0600 temp file in the same folder, fsync, rename."""
        if self.read_only:
            raise KeyringError(f"master keys come from {ENV_VAR}; they cannot be saved here")
        if self.path is None:
            raise KeyringError("this keyring has no file to save to")
        temp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            self._write(fd)
            os.replace(temp, self.path)
            self._loaded_mtime = self.path.stat().st_mtime_ns
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.path.parent)
