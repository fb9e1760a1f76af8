"""How the face-blend detector holds up when photos are degraded after the fact, as a table.

  .venv/bin/python benchmarks/eval_robustness.py FOLDER [FOLDER...] [--limit 400]

FOLDER holds real/ and fake/ (from `deepscreen synthesize`, with --method sbi or faceswap). Each condition is
applied to real and fake files alike (what sharing sites and messengers do to every upload: recompression,
downsizing, blur, noise, upscaling), the copies are scanned through the full scanner (`evaluate_folder`), and the
table gives the AUC, and the share of fake and of real files at p >= 0.5, per condition. `--limit` takes that
many files per class, picked evenly (0: all). Results for the committed model are in models/face_blend.md.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from deepscreen import Scanner
from deepscreen.synthesis.sbi import jpeg_roundtrip
from deepscreen.training.evaluate import evaluate_folder, labelled_files


def _resize(img: np.ndarray, f: float) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC)


def _noise(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


# name -> what happens to an RGB image (the copy is then saved as PNG, so no further loss is added)
CONDITIONS = {
    "as made (JPEG 95)": lambda img, k: img,
    "JPEG 75": lambda img, k: jpeg_roundtrip(img, 75),
    "JPEG 50": lambda img, k: jpeg_roundtrip(img, 50),
    "JPEG 30": lambda img, k: jpeg_roundtrip(img, 30),
    "half size, JPEG 75 (a shared copy)": lambda img, k: jpeg_roundtrip(_resize(img, 0.5), 75),
    "blur (Gaussian, sigma 1 px)": lambda img, k: cv2.GaussianBlur(img, (0, 0), 1.0),
    "noise (sigma 6 grey levels)": lambda img, k: _noise(img, 6.0, k),
    "2x upscale (cubic)": lambda img, k: _resize(img, 2.0),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folders", type=Path, nargs="+")
    ap.add_argument("--limit", type=int, default=400, help="files per class, picked evenly (0: all)")
    args = ap.parse_args()
    scanner = Scanner()
    for folder in args.folders:
        files = labelled_files(folder, args.limit)
        print(f"\n{folder}: {sum(y == 0 for _, y in files)} real, {sum(y == 1 for _, y in files)} fake")
        print(f"{'condition':36s} {'AUC':>7s} {'fake p>=.5':>11s} {'real p>=.5':>11s} {'no face':>8s}")
        for name, change in CONDITIONS.items():
            with tempfile.TemporaryDirectory() as tmp:
                for k, (path, y) in enumerate(files):
                    out = Path(tmp) / ("real", "fake")[y] / f"{k:05d}.png"
                    out.parent.mkdir(exist_ok=True)
                    cv2.imwrite(str(out), change(cv2.imread(str(path))[..., ::-1], k)[..., ::-1])
                r = evaluate_folder(scanner, Path(tmp))
            print(f"{name:36s} {r.get('auc', float('nan')):7.4f} {r.get('tpr', float('nan')):11.1%} "
                  f"{r.get('fpr', float('nan')):11.1%} {r['abstained_no_face']:8d}", flush=True)


if __name__ == "__main__":
    main()
