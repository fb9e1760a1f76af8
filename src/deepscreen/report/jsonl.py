"""One verdict per line of JSON (JSON Lines), for batch runs and log pipelines."""

from __future__ import annotations

import json
import math
from typing import Any

from deepscreen.verdict import Verdict


def _clean(obj: Any) -> Any:
    """Make `obj` strict-JSON safe: non-finite floats become None, numpy scalars/arrays plain Python."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy scalar or array
        return _clean(obj.tolist())
    return str(obj)


def to_json_line(v: Verdict) -> str:
    """One compact JSON object, no newline inside; NaN/inf are written as null."""
    return json.dumps(_clean(v.to_dict()), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
