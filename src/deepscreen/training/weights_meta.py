"""Change the metadata of a committed weights file (calibration, abstention limits) without touching its tensors,
so the tensors' digest still names the training run that wrote them."""

from __future__ import annotations

import json
from pathlib import Path


def update_metadata(path: Path, changes: dict) -> dict:
    """Merge `changes` into the file's `deepscreen` metadata and rewrite it; returns the new metadata."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["deepscreen"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta.update(changes)
    save_file(tensors, str(path), metadata={"deepscreen": json.dumps(meta)})
    return meta
