"""voice v1.3's recording calibration: refit the last Platt scaling of the voice detector on other people's TTS,
voice conversion and vocoder copies and on real speech of other corpora (`../shared/data/speech/dev`), and print
the per-system table from calibrations that never saw the system or the speaker fold they are measured on.

    python benchmarks/voice_recording_calibration.py [--prior 0.1] [--write]

1. Every dev clip is scanned by the voice detector without a recording calibration (a = 1, b = 0).
2. Held-out rates: each fake clip's probability comes from a Platt scaling fitted on the clips of the other
   systems outside its speaker fold; each real clip's from one fitted outside its fold (folds by speaker, LJ and
   unnamed speakers by sentence group: training/voice_whisper.fold_of). The intercept is moved to `--prior`.
3. `--write` stores the scaling fitted on every clip (`recording_platt`) in models/voice.safetensors; the
   networks are not touched.
"""

from __future__ import annotations

import argparse
import csv

import numpy as np

from deepscreen.config import MODELS_DIR, SHARED_DIR
from deepscreen.training import metrics
from deepscreen.training.weights_meta import update_metadata
from deepscreen.training.voice_whisper import fold_of, speaker_group

DEV = SHARED_DIR / "data/speech/dev"


def scan_dev() -> list[dict]:
    from deepscreen.detectors import Calibration
    from deepscreen.scan import Scanner

    scanner = Scanner(detectors=("voice",))
    scanner.voice_detector.calibration = Calibration()  # uncalibrated: the recording calibration is fitted here
    with open(DEV / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        p = scanner.scan(DEV / r["file"]).probability
        if p is None:
            continue
        p = min(max(p, 1e-6), 1 - 1e-6)
        out.append({"y": int(r["label"] == "fake"), "z": float(np.log(p / (1 - p))), "system": r["system"],
                    "fold": fold_of(speaker_group(r))})
    return out


def fit(y, z, prior: float) -> tuple[float, float]:
    a, b = metrics.fit_platt(y, z)
    return a, b + np.log(prior / (1 - prior)) - np.log(y.mean() / (1 - y.mean()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", type=float, default=0.1, help="share of synthetic speech the calibration assumes")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    rows = scan_dev()
    y = np.array([r["y"] for r in rows])
    z = np.array([r["z"] for r in rows])
    system = np.array([r["system"] for r in rows])
    fold = np.array([r["fold"] for r in rows])
    p = np.zeros(len(rows))
    for i in range(len(rows)):
        keep = (fold != fold[i]) & ((y == 0) | (system != system[i]))
        a, b = fit(y[keep], z[keep], args.prior)
        p[i] = metrics.sigmoid(a * z[i] + b)
    print(f"{'system':28} {'clips':>5} {'AUC':>6} {'caught':>7}")
    for s in sorted(set(system[y == 1])):
        m = system == s
        auc = metrics.auc(np.r_[np.zeros((y == 0).sum()), np.ones(m.sum())], np.r_[z[y == 0], z[m]])
        print(f"{s:28} {m.sum():5d} {auc:6.3f} {np.mean(p[m] >= 0.5):7.1%}")
    print(f"{'all':28} {(y == 1).sum():5d} {metrics.auc(y, z):6.3f} {np.mean(p[y == 1] >= 0.5):7.1%}")
    for c in sorted(set(system[y == 0])):
        m = system == c
        print(f"real {c:23} {m.sum():5d} flagged {np.mean(p[m] >= 0.5):.1%}")
    print(f"real, all {(y == 0).sum():5d} flagged {np.mean(p[y == 0] >= 0.5):.1%}")
    a, b = fit(y, z, args.prior)
    print(f"recording calibration on every clip: slope {a:.4f}, intercept {b:+.4f} (prior {args.prior})")
    if args.write:
        path = MODELS_DIR / "voice.safetensors"
        update_metadata(path, {"recording_platt": [float(a), float(b)]})
        print(f"written into {path}")


if __name__ == "__main__":
    main()
