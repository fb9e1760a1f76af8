"""The output folder as a crash-safe store.

While a batch runs, finished rows go into small Parquet parts under DIR/parts/, each written to a hidden
temporary name and renamed into place (rename is atomic on one file system): a part is either whole or absent,
whatever moment the process is killed at. At the end the parts are compacted into DIR/results.parquet (again via
a temporary file and a rename) and only then deleted. A kill between those two steps leaves rows in both;
reading keeps the newest row per path, so nothing counts twice.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import rows as R

RESULTS = "results.parquet"
ERRORS = "errors.jsonl"
PARTS = "parts"
# What resuming needs to know of a done row; reading only these keeps start-up cheap on big collections.
INDEX_COLUMNS = ["path", "label", "sha256", "size_bytes", "mtime_ns", "setup_key"]


class Store:
    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        self.parts = self.out / PARTS
        self.parts.mkdir(parents=True, exist_ok=True)
        for folder in (self.out, self.parts):  # half-written by a killed run: never renamed, never read
            for stale in folder.glob(".tmp-*"):
                stale.unlink(missing_ok=True)

    # -- writing -----------------------------------------------------------------------------------------------
    def write_part(self, rows: list[dict]) -> Path | None:
        if not rows:
            return None
        # Time first, so names sort in writing order (the newest row per path wins when reading).
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        final = self.parts / name
        _atomic_parquet(R.table(rows), final)
        return final

    # -- reading -----------------------------------------------------------------------------------------------
    def _files(self) -> list[Path]:
        results = self.out / RESULTS
        return ([results] if results.is_file() else []) + sorted(self.parts.glob("part-*.parquet"))

    def read(self, columns: list[str] | None = None) -> list[dict]:
        """Every stored row, newest per path (results.parquet first, then the parts in writing order)."""
        latest: dict[str, dict] = {}
        for f in self._files():
            for row in pq.read_table(f, columns=columns, schema=R.SCHEMA if columns is None else None).to_pylist():
                latest[row["path"]] = row
        return list(latest.values())

    def done_index(self) -> dict[str, dict]:
        return {r["path"]: r for r in self.read(INDEX_COLUMNS)}

    # -- compaction --------------------------------------------------------------------------------------------
    def compact(self, order: Iterable[str], truths: dict[str, str | None]) -> list[dict]:
        """results.parquet = one row per path in `order` (the current INPUT, in its order), with the labels of the
        current manifest; rows of files no longer in INPUT are dropped. Then the parts go. Returns the rows."""
        stored = {r["path"]: r for r in self.read()}
        rows = []
        for path in order:
            row = stored.get(path)
            if row is not None:
                rows.append({**row, "truth": truths.get(path)})
        _atomic_parquet(R.table(rows), self.out / RESULTS)
        for part in self.parts.glob("part-*.parquet"):
            part.unlink(missing_ok=True)
        write_errors(self.out / ERRORS, rows)
        return rows


def write_errors(path: Path, rows: list[dict]) -> None:
    """errors.jsonl: one line per file that could not be scanned, with its reason (rewritten whole, atomically)."""
    lines = [json.dumps({"path": r["path"], "error": r["error"], "size_bytes": r["size_bytes"]}, ensure_ascii=False)
             for r in rows if r["label"] == "error"]
    _atomic_bytes(("\n".join(lines) + "\n" if lines else "").encode(), path)


def _atomic_parquet(table: pa.Table, final: Path) -> None:
    tmp = final.parent / f".tmp-{uuid.uuid4().hex}-{final.name}"
    with open(tmp, "wb") as f:
        pq.write_table(table, f, compression="zstd")
        f.flush()
        os.fsync(f.fileno())  # the bytes are on disk before the name says the part exists
    os.replace(tmp, final)


def _atomic_bytes(data: bytes, final: Path) -> None:
    tmp = final.parent / f".tmp-{uuid.uuid4().hex}-{final.name}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
