"""One results row per file: the `scan --json` fields, the nested ones flattened where a column is useful and
kept whole as JSON text otherwise, plus what resuming needs (size, mtime, the setup key).

The schema is fixed here rather than inferred, so that parts written by different workers (a part with only
errors has no numbers at all) always concatenate, and both engines write byte-for-byte the same columns.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import pyarrow as pa

from ..report.jsonl import to_json_line
from ..verdict import Verdict

# The verdict's media facts with a column each.
MEDIA_COLUMNS = {"width": pa.int32(), "height": pa.int32(), "duration_s": pa.float64(), "fps": pa.float64(),
                 "frame_count": pa.int64(), "codec": pa.string(), "has_audio": pa.bool_(),
                 "frames_analysed": pa.int32(), "faces_found": pa.int32()}
# Nested `scan --json` fields kept whole as JSON text (timings: milliseconds per stage of the scan).
NESTED = {"faces": [], "timeline": [], "voice": None, "evidence": [], "models": [], "media": {}, "timings": {}}

SCHEMA = pa.schema([
    ("path", pa.string()),
    ("truth", pa.string()),  # the manifest's label (real/fake), None when unlabelled
    ("sha256", pa.string()),  # of the file's bytes; empty when it could not be read
    ("size_bytes", pa.int64()),  # size and mtime when the scan started: the cheap "unchanged?" test on resume
    ("mtime_ns", pa.int64()),
    ("kind", pa.string()),
    ("label", pa.string()),  # the verdict: authentic / suspicious / manipulated / inconclusive / error
    ("flagged", pa.bool_()),
    ("probability", pa.float64()),
    ("summary", pa.string()),
    ("error", pa.string()),
    ("faces", pa.int32()),  # face tracks
    ("face_probability", pa.float64()),  # of the most suspicious track
    ("voice_probability", pa.float64()),
    ("speech_s", pa.float64()),
    ("cross_check", pa.string()),
    *MEDIA_COLUMNS.items(),
    ("model_versions", pa.string()),  # e.g. "face_blend 1.4, voice 1.0": the models this verdict used
    ("setup_key", pa.string()),  # every loaded model's hash + the scan settings; a change means rescan
    ("elapsed_s", pa.float64()),  # how long the scan took, in its worker
    ("scanned_at", pa.float64()),  # when it finished (Unix time, seconds): an audit trail, and throughput
    # The nested scan --json fields, whole; `extra`: fields a newer scan core adds, until they get columns of
    # their own (kept, not dropped).
    *[(f"{name}_json", pa.string()) for name in (*NESTED, "extra")],
])

COLUMNS = SCHEMA.names
# Columns that measure the run rather than the file: they differ between two runs of the same scan.
TIMING_COLUMNS = ("elapsed_s", "scanned_at", "timings_json")


def setup_key(models: list, config) -> str:
    """A short hash of every loaded model (name, version, weight-file hash, arithmetic) and the scan settings:
    a row scanned under another key is stale and is scanned again."""
    blob = json.dumps({"models": [asdict(m) for m in models], "config": asdict(config)}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def verdict_row(v: Verdict, truth: str | None, size: int | None, mtime_ns: int | None, key: str,
                scanned_at: float | None = None) -> dict:
    d = json.loads(to_json_line(v))  # exactly what `scan --json` prints for this file
    media = d.get("media") or {}
    voice = d.get("voice") or {}
    faces = d.get("faces") or []

    def js(value) -> str | None:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")) if value else None

    return {
        "path": d["path"], "truth": truth, "sha256": d["sha256"], "size_bytes": size, "mtime_ns": mtime_ns,
        "kind": d["kind"], "label": d["label"], "flagged": v.flagged, "probability": d["probability"],
        "summary": d["summary"], "error": d["error"],
        "faces": len(faces),
        # a face the detector abstained on (too small, too soft, seen too briefly) has no probability
        "face_probability": max((f["probability"] for f in faces if f["probability"] is not None), default=None),
        "voice_probability": voice.get("probability"), "speech_s": voice.get("speech_s"),
        "cross_check": d["cross_check"],
        **{k: media.get(k) for k in MEDIA_COLUMNS},
        "model_versions": ", ".join(f"{m['name']} {m['version']}" for m in d["models"]) or None,
        "setup_key": key, "elapsed_s": d["elapsed_s"], "scanned_at": scanned_at,
        **{f"{name}_json": js(d.get(name)) for name in NESTED},
        "extra_json": js({k: v for k, v in d.items() if k not in _KNOWN}),
    }


# Top-level `scan --json` fields that have columns above.
_KNOWN = {"path", "sha256", "kind", "probability", "label", "summary", *NESTED, "cross_check", "elapsed_s", "error"}


def verdict_dict(row: dict) -> dict:
    """The `scan --json` object of a results row, whole again (nested fields from their JSON columns)."""
    def unjs(column, empty):
        return json.loads(row[column]) if row.get(column) else empty

    return {
        **{k: row[k] for k in ("path", "sha256", "kind", "probability", "label", "summary", "cross_check",
                               "elapsed_s", "error")},
        **{name: unjs(f"{name}_json", empty) for name, empty in NESTED.items()},
        **unjs("extra_json", {}),
    }


def table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=SCHEMA)


def crash_row(path: str, truth: str | None, key: str) -> dict:
    """The row of a file whose scan killed its worker process (a crash below Python, e.g. in a decoder)."""
    import os

    from ..media.errors import label

    try:
        st = os.stat(path)
        size, mtime = st.st_size, st.st_mtime_ns
    except OSError:
        size = mtime = None
    msg = f"{label(path)}: the worker process died while scanning it (a crash in a decoder?)"
    return {"path": path, "truth": truth, "sha256": "", "size_bytes": size, "mtime_ns": mtime, "kind": "unknown",
            "label": "error", "flagged": False, "probability": None, "summary": msg, "error": msg, "faces": 0,
            "setup_key": key}
