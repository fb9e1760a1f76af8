"""Where the face detector stops telling real from fake: AUC by face width and by crop detail (sharpness), on
held-out pairs sent through the video channel at fixed face widths, and the limits below which the scanner
abstains (FaceLimits, written into the weights with --write).

    python benchmarks/measure_face_limits.py [--weights models/face_blend.safetensors] [--pairs 50] [--write]

Pairs: validation people of the world photos, real video frames and LFW (never trained on), each real face and
its forgery through one drawn channel (codec, quality, motion) at the width given, found and aligned by the
scanner's face code. A limit is the smallest width (detail) from which on every bin reaches MIN_AUC.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from deepscreen.config import MODELS_DIR, PROJECT_ROOT, SHARED_DIR
from deepscreen.scan import sharpness
from deepscreen.training.weights_meta import update_metadata

WIDTHS = (24, 32, 40, 48, 56, 64, 80, 100, 130, 170)
MIN_AUC = 0.75  # below this a flag on a real face is as likely as a catch: the scanner abstains instead


def make_pairs(per_width: int, seed: int = 7) -> dict:
    from deepscreen.faces.detect import FaceAnalyzer
    from deepscreen.training.channel_pool import make_channel_pair
    from deepscreen.training.world_data import stage3_sources

    work = PROJECT_ROOT / ".cache/train3"
    sets, weights = stage3_sources(SHARED_DIR, SHARED_DIR / "data/faces/lfw", work / "lfw_landmarks.npz",
                                   work / "world", "val")
    analyzer = FaceAnalyzer(max_faces=1)
    rng = np.random.default_rng(seed)
    out = {"real": [], "fake": [], "width": [], "target": []}
    for w in WIDTHS:
        made = 0
        for _ in range(per_width * 4):  # small faces are often not found: try more
            pair = make_channel_pair(sets, weights, rng, analyzer, jitter=False, face_width=float(w))
            if pair is None:
                continue
            out["real"].append(pair[0])
            out["fake"].append(pair[1])
            out["width"].append(pair[3])
            out["target"].append(w)
            made += 1
            if made == per_width:
                break
        print(f"width {w}: {made} pairs", file=sys.stderr, flush=True)
    return {k: np.asarray(v) for k, v in out.items()}


def limit(edges, aucs) -> float:
    """The lowest edge from which every bin above reaches MIN_AUC (0 if all do)."""
    ok = [a is None or a >= MIN_AUC for a in aucs]
    for k in range(len(edges)):
        if all(ok[k:]):
            return float(edges[k])
    return float(edges[-1])


def main() -> None:
    from deepscreen.detectors.face_blend import FaceBlendDetector
    from deepscreen.training.metrics import auc

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=MODELS_DIR / "face_blend.safetensors")
    ap.add_argument("--pairs", type=int, default=50, help="pairs per face width")
    ap.add_argument("--write", action="store_true", help="write the limits into the weights' metadata")
    args = ap.parse_args()
    cache = PROJECT_ROOT / f".cache/eval/limit_pairs_{args.pairs}.npz"
    if cache.exists():
        pairs = dict(np.load(cache))
    else:
        pairs = make_pairs(args.pairs)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **pairs)
    det = FaceBlendDetector(args.weights)
    crops = np.concatenate([pairs["real"], pairs["fake"]])
    z = np.concatenate([det.score_faces(crops[i:i + 64]).logits for i in range(0, len(crops), 64)])
    y = np.r_[np.zeros(len(pairs["real"])), np.ones(len(pairs["fake"]))]
    width = np.r_[pairs["width"], pairs["width"]]
    sharp = np.array([sharpness(c) for c in crops])
    p = np.array([det.calibrate(v) for v in z])

    def table(values, edges, name):
        print(f"\n{name:>12} {'pairs':>6} {'AUC':>6} {'real flagged':>13} {'fakes caught':>13}")
        aucs = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            m = (values >= lo) & (values < hi)
            a = auc(y[m], z[m]) if m.sum() >= 20 and len(set(y[m])) == 2 else None
            aucs.append(a)
            real, fake = m & (y == 0), m & (y == 1)
            print(f"{lo:5.0f}-{hi:<6.0f} {int(real.sum()):6d} {'' if a is None else f'{a:.3f}':>6} "
                  f"{np.mean(p[real] >= 0.5) if real.any() else float('nan'):13.1%} "
                  f"{np.mean(p[fake] >= 0.5) if fake.any() else float('nan'):13.1%}")
        return aucs

    w_edges = [0, 40, 60, 95, 160, 1000]  # about 100 pairs a bin: narrower bins move by +-0.05 by chance
    w_aucs = table(width, w_edges, "face px")
    s_edges = [0, *np.quantile(sharp[width >= limit(w_edges, w_aucs)], np.linspace(0.2, 0.8, 4)).round(0), 1e9]
    s_aucs = table(sharp, s_edges, "sharpness")
    limits = {"min_width": limit(w_edges, w_aucs), "min_sharpness": limit(s_edges, s_aucs),
              "note": f"(held-out AUC under {MIN_AUC} there)"}
    print(f"\nAUC over all pairs {auc(y, z):.3f}; limits: {json.dumps(limits)}")
    if args.write:
        update_metadata(args.weights, {"face_limits": limits})
        print(f"written into {args.weights}")


if __name__ == "__main__":
    main()
