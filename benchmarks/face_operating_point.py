"""The face detector's operating point: how far to move its Platt intercept so that at most 5 % of real files that
neither training nor any dev set has seen are flagged at p >= 0.5.

    python benchmarks/face_operating_point.py [--weights models/face_blend.safetensors] [--write]

Real files: the world photos of validation identities (`training/world_data.split_of`) and the real training
clips kept for validation, scanned by the full scanner at the balanced calibration (`platt_fitted` in the
metadata, else `platt`). The shift is the smallest, in steps of 0.5, that brings the flagged share to MAX_FLAGGED;
--write stores it (`platt` = fitted intercept + shift) with a note. The dev sets are never read.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from deepscreen.config import MODELS_DIR, SHARED_DIR, ScanConfig
from deepscreen.training.weights_meta import update_metadata

MAX_FLAGGED = 0.05


def validation_reals() -> list[Path]:
    from deepscreen.training.world_data import split_of

    world = SHARED_DIR / "data/faces/world"
    with open(world / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    photos = [world / r["file"] for r in rows if split_of(f"{r['source_dataset']}:{r['identity'] or r['file']}") == "val"]
    clips = [p for p in sorted((SHARED_DIR / "data/video/train/real").glob("*")) if split_of(f"video:{p.name}") == "val"]
    return clips + photos


def main() -> None:
    from deepscreen.detectors.face_blend import FaceBlendDetector
    from deepscreen.scan import Scanner

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=MODELS_DIR / "face_blend.safetensors")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    from deepscreen.detectors import Calibration

    det = FaceBlendDetector(args.weights)
    det.calibration = Calibration(*det.meta.get("platt_fitted", det.meta["platt"]))  # judge at the balanced one
    scanner = Scanner(ScanConfig(keep_crops=False))
    scanner.face_detectors[0] = det
    files = validation_reals()
    z = []
    for path in files:
        v = scanner.scan(path)
        if v.probability is not None:
            z.append(float(np.log(v.probability / (1 - v.probability))))
    z = np.array(z)
    print(f"{len(files)} real files, {len(z)} judged")
    shift = 0.0
    while np.mean(z + shift >= 0) > MAX_FLAGGED:
        print(f"shift {shift:+.1f}: {np.mean(z + shift >= 0):.1%} flagged")
        shift -= 0.5
    print(f"shift {shift:+.1f}: {np.mean(z + shift >= 0):.1%} flagged (at most {MAX_FLAGGED:.0%})")
    if args.write:
        a, b = det.meta.get("platt_fitted", det.meta["platt"])
        update_metadata(args.weights, {
            "platt_fitted": [a, b], "platt": [a, b + shift],
            "operating_point": (f"Platt intercept moved by {shift:+.1f}: the smallest shift, in steps of 0.5, at "
                                f"which at most {MAX_FLAGGED:.0%} of {len(z)} judged real files held out of "
                                "training and of every dev set are flagged (benchmarks/face_operating_point.py)")})
        print(f"written into {args.weights}")


if __name__ == "__main__":
    main()
