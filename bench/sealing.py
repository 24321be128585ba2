"""Throughput of sealing and opening (core.documents.sealing). Not a test.

    .venv/bin/python bench/sealing.py [--mib 256] [--repeat 3]

Seals and opens 256 MiB, fed in 1 MiB and in 64 KiB writes, with the default 1 MiB segments,
and compares with raw ``AESGCM.encrypt_into`` / ``decrypt_into`` on buffers of the write size
and with raw SHA-256 (the sealer hashes all plaintext; on most CPUs that, not AES, is the limit).
Best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.documents.sealing import (
    Opener,
    Sealer,
    new_data_key,
    new_file_id,
)

MIB = 1024 * 1024


def best(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def hash_all(source: memoryview) -> None:
    digest = hashlib.sha256()
    for pos in range(0, len(source), MIB):
        digest.update(source[pos : pos + MIB])


def raw_encrypt(aead: AESGCM, source: memoryview, write: int) -> None:
    out = bytearray(write + 16)
    nonce = bytes(12)
    for pos in range(0, len(source), write):
        aead.encrypt_into(nonce, source[pos : pos + write], b"header", out)


def raw_decrypt(aead: AESGCM, source: memoryview, write: int) -> None:
    nonce = bytes(12)
    block = aead.encrypt(nonce, source[:write], b"header")
    plain = bytearray(write)
    for _ in range(0, len(source), write):
        aead.decrypt_into(nonce, block, b"header", plain)


def seal(key: bytes, file_id: bytes, source: memoryview, write: int, keep: bool) -> bytearray:
    """Seal ``source`` in writes of ``write`` bytes; keep the output or discard it."""
    sealed = bytearray()
    sealer = Sealer(key, file_id)
    for pos in range(0, len(source), write):
        buffers = sealer.update(source[pos : pos + write])
        if keep:
            for buffer in buffers:
                sealed += buffer
    last = sealer.finalize()
    if keep:
        sealed += last
    sealer.sha256_hex()
    return sealed


def open_all(key: bytes, file_id: bytes, sealed: memoryview, write: int, sha: bool) -> None:
    opener = Opener(key, file_id, compute_sha256=sha)
    for pos in range(0, len(sealed), write):
        opener.update(sealed[pos : pos + write])
    opener.finalize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="MiB of plaintext (default 256)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    total = args.mib * MIB
    source = memoryview(bytearray(os.urandom(total)))
    key, file_id = new_data_key(), new_file_id()
    aead = AESGCM(key)

    def rate(seconds: float) -> float:
        return total / seconds / 1e6

    sha = rate(best(lambda: hash_all(source), args.repeat))
    print(f"{args.mib} MiB, default 1 MiB segments, best of {args.repeat}; MB = 10^6 bytes")
    print(f"raw SHA-256 (hashlib): {sha:8.0f} MB/s")
    print()
    header = f"{'write size':>10}  {'operation':<24}{'MB/s':>8}  {'vs raw AES':>10}"
    print(header)
    print("-" * len(header))
    for write in (MIB, 64 * 1024):
        raw_enc = rate(best(lambda w=write: raw_encrypt(aead, source, w), args.repeat))
        raw_dec = rate(best(lambda w=write: raw_decrypt(aead, source, w), args.repeat))
        seal_rate = rate(best(lambda w=write: seal(key, file_id, source, w, False), args.repeat))
        sealed = memoryview(seal(key, file_id, source, write, keep=True))
        open_rate = rate(
            best(lambda w=write, s=sealed: open_all(key, file_id, s, w, False), args.repeat)
        )
        open_sha = rate(
            best(lambda w=write, s=sealed: open_all(key, file_id, s, w, True), args.repeat)
        )
        bound = 1 / (1 / raw_enc + 1 / sha)
        label = f"{write // 1024} KiB"
        rows = [
            ("raw encrypt_into", raw_enc),
            ("raw decrypt_into", raw_dec),
            ("seal (incl. SHA-256)", seal_rate),
            ("  bound: AES + SHA-256", bound),
            ("open", open_rate),
            ("open + SHA-256", open_sha),
        ]
        for name, value in rows:
            print(f"{label:>10}  {name:<24}{value:8.0f}  {value / raw_enc:9.2f}x")
        print()


if __name__ == "__main__":
    main()
