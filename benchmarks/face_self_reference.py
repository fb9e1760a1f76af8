"""A reference made from the face itself (tried, not built): does a face's score minus the score of its own
self-blends remove the spread of real videos' levels? Direction fixed before looking: a swap, already blended,
should gain less from one more blend than a real face does.

    python benchmarks/face_self_reference.py

Per dev video (`../shared/data/video/dev`), the face track with the highest median logit of the shipped face
detector (every frame, no abstention limits), and the median logit of two self-blends (synthesis.sbi) of each of
its aligned crops. Prints per video and the AUC of the face's logit, of the gap, over all fakes and over the
face swaps (DeepFaceLive, GHOST) against the real videos. Result in models/face_blend_history.md (2026-12-07).
"""

from __future__ import annotations

import numpy as np

from deepscreen.config import SHARED_DIR, ScanConfig
from deepscreen.scan import Scanner
from deepscreen.synthesis.sbi import self_blend
from deepscreen.training.metrics import auc

SWAPS = ("deepfacelive_composite", "ghost_faceswap")


def main() -> None:
    scanner = Scanner(ScanConfig(keep_crops=True))
    detector = scanner.face_detectors[0]
    rows = []
    for label, sub in ((0, "real"), (1, "fake")):
        for path in sorted((SHARED_DIR / "data/video/dev" / sub).glob("*")):
            tracks: dict[int, list] = {}
            for crop in scanner.prepare(path).crops:
                tracks.setdefault(crop.track_id, []).append(crop)
            best = None
            for crops in (c for c in tracks.values() if len(c) >= 3):
                z = float(np.median(detector.score_faces(np.stack([c.crop for c in crops])).logits))
                rng = np.random.default_rng(0)
                blends = np.stack([self_blend(c.crop, c.landmarks, rng).image for c in crops for _ in range(2)])
                z_blend = float(np.median(detector.score_faces(blends).logits))
                if best is None or z > best[0]:
                    best = (z, z_blend)
            if best:
                rows.append((label, path.name.startswith(SWAPS), *best))
                print(f"{label} {path.name[:48]:48} face {best[0]:6.2f}  self-blends {best[1]:6.2f}  "
                      f"gap {best[0] - best[1]:6.2f}")
    y, swap = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    z, z_blend = np.array([r[2] for r in rows]), np.array([r[3] for r in rows])
    for name, keep in (("all fakes vs real", np.ones(len(rows), bool)), ("swaps vs real", (y == 0) | swap)):
        print(f"{name:18} AUC face {auc(y[keep], z[keep]):.3f}  face - self-blends "
              f"{auc(y[keep], (z - z_blend)[keep]):.3f}")


if __name__ == "__main__":
    main()
