"""A file's bytes: its hash, and the whole of a small file in one read (hashed as it is read)."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20  # 1 MiB reads: videos can be gigabytes


def file_sha256(path: Path) -> str:
    """The hash that names a file in verdicts and model lists."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def read_hashed(path: Path) -> tuple[bytes, str]:
    """The file's bytes and their sha256 from one read: a photo is decoded from these bytes, not opened again."""
    h, parts = hashlib.sha256(), []
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
            parts.append(chunk)
    return b"".join(parts), h.hexdigest()
