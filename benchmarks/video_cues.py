"""Issue #37 part 4: do the seed articles' cues ("people who don't blink", "colouring inconsistencies", "weird
movement") tell the dev videos' real faces from their deepfakes, and do they add to the face detector?

    .venv/bin/python benchmarks/video_cues.py [--fps 10] [--seconds 20] [--eval .cache/eval/v2.json]

Each video of ../shared/data/video/dev (real and fake) and, for how real faces spread, train/real is read at
--fps for its first --seconds; the largest face of each frame gets MediaPipe's 468 landmarks (the scanner's
faces/ code). Per video, with a direction fixed before looking (higher = more fake), nothing fitted:

- blinks: how surprising the count of blinks is for the time the face was seen, -log P(X <= blinks) with X
  Poisson at 15 blinks a minute (people blink 10-20 times a minute at rest), so a 2-s clip without a blink is no
  evidence and a 20-s one is. A blink is a run of frames whose eye aspect ratio (Soukupova & Cech 2016, on the
  mesh's eye points) falls under 75 % of the video's median. Early deepfakes rarely blinked (Li et al. 2018,
  "In Ictu Oculi"); DeepFaceLab-style decoders render closed eyes badly when their source faces lack them;
- motion: how much the inner face (eyes, nose, mouth) jerks relative to the head. Each frame's face oval is mapped
  onto the first frame's by a similarity; what the inner points still move, as a second difference over three
  frames, in % of the face size (median). A pasted face can slide and wobble on the head it is pasted on;
- colour: the colour difference (CIELAB, delta E) between the cheeks and the forehead, median over frames, and
  its frame-to-frame jitter. A swapped inner face carries its own skin tone and lighting under the original's
  forehead.

Prints per cue: AUC over dev real vs dev fake (and per fake method), the share of train+dev real videos at or
above the fakes' median (what a threshold there would flag); with --eval (an eval_world.py results file), the face
detector's AUC alone and averaged in rank with each cue (no weights fitted), which is what "adds to the fused
verdict" means on 24 videos.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import av
import cv2
import numpy as np

from deepscreen.config import SHARED_DIR
from deepscreen.faces.detect import FaceAnalyzer
from deepscreen.training.metrics import auc

VIDEO = SHARED_DIR / "data/video"
# MediaPipe face mesh indices: eye contours (p1..p6 of the eye aspect ratio), face oval, inner-face points,
# cheeks and forehead patches.
LEFT_EYE = (33, 160, 158, 133, 153, 144)
RIGHT_EYE = (362, 385, 387, 263, 373, 380)
OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176,
        149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
INNER = (33, 133, 362, 263, 1, 4, 61, 291, 13, 14, 159, 145, 386, 374)
CHEEKS = ((50, 101, 36, 205), (280, 330, 266, 425))
FOREHEAD = ((109, 10, 338, 151, 108),)


def frames(path: Path, fps: float, seconds: float):
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        next_t = 0.0
        for f in c.decode(vs):
            t = float(f.time or 0.0)
            if t > seconds:
                break
            if t + 1e-6 >= next_t:
                next_t = t + 1.0 / fps
                yield t, f.to_ndarray(format="rgb24")


def ear(lms: np.ndarray, eye) -> float:
    p = lms[list(eye)]
    return float((np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])) / (2 * np.linalg.norm(p[0] - p[3]) + 1e-6))


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    m, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), dst.astype(np.float32))
    return m


def patch_lab(lab: np.ndarray, lms: np.ndarray, polys) -> np.ndarray:
    mask = np.zeros(lab.shape[:2], np.uint8)
    for poly in polys:
        cv2.fillPoly(mask, [lms[list(poly)].round().astype(np.int32)], 1)
    return lab[mask > 0].mean(0) if mask.any() else np.full(3, np.nan)


def cues(path: Path, analyzer: FaceAnalyzer, fps: float, seconds: float) -> dict | None:
    ears, inner, oval, sizes, colour, times = [], [], [], [], [], []
    for t, rgb in frames(path, fps, seconds):
        found = [f for f in analyzer(rgb) if f.landmarks is not None]
        if not found:
            continue
        face = max(found, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        lms = face.landmarks
        times.append(t)
        ears.append((ear(lms, LEFT_EYE) + ear(lms, RIGHT_EYE)) / 2)
        inner.append(lms[list(INNER)])
        oval.append(lms[list(OVAL)])
        sizes.append(float(np.ptp(lms[:, 0])))
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32) * [100 / 255, 1, 1] - [0, 128, 128]
        colour.append(np.linalg.norm(patch_lab(lab, lms, CHEEKS) - patch_lab(lab, lms, FOREHEAD)))
    if len(times) < 10:
        return None
    e = np.array(ears)
    # times are the sampled frames with a face: len(times) / fps is how long the face was seen
    closed = e < 0.75 * np.median(e)
    blinks = int(np.sum(closed[1:] & ~closed[:-1]) + closed[0])
    minutes = max(times[-1] - times[0], 1.0) / 60
    # Inner points in the first frame's head coordinates: what is left once the head's own motion is taken out.
    ref = oval[0]
    steady = []
    for o, i in zip(oval, inner):
        m = similarity(o, ref)
        steady.append(i @ m[:, :2].T + m[:, 2] if m is not None else np.full_like(i, np.nan))
    steady = np.array(steady)
    jerk = np.linalg.norm(steady[2:] - 2 * steady[1:-1] + steady[:-2], axis=2).mean(1)
    c = np.array(colour)
    return {"blinks_per_min": blinks / minutes, "blink_count": blinks, "seconds": len(times) / fps,
            "motion": float(np.nanmedian(jerk) / np.ptp(ref[:, 0]) * 100),  # in the first frame's face widths
            "colour": float(np.nanmedian(c)), "colour_jitter": float(np.nanmedian(np.abs(np.diff(c)))),
            "frames": len(times), "face_px": float(np.median(sizes))}


def blink_surprise(blinks: int, seconds: float, per_minute: float = 15.0) -> float:
    lam = per_minute * seconds / 60
    p = sum(math.exp(-lam) * lam ** k / math.factorial(k) for k in range(blinks + 1))
    return -math.log(max(p, 1e-12))


def rank(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)) / max(len(x) - 1, 1)


def measure(args) -> list[dict]:
    with open(VIDEO / "manifest.csv", newline="") as f:
        method = {r["file"]: r["method"] for r in csv.DictReader(f)}
    todo = [(split, sub, p) for split, sub in (("dev", "real"), ("dev", "fake"), ("train", "real"))
            for p in sorted((VIDEO / split / sub).glob("*"))]
    analyzer = FaceAnalyzer(max_faces=2)
    rows = []
    for split, sub, p in todo:
        c = cues(p, analyzer, args.fps, args.seconds)
        print(f"{split}/{sub}/{p.name}: {c}", flush=True)
        if c:
            rows.append({"split": split, "y": int(sub == "fake"), "path": str(p),
                         "method": method.get(f"{split}/{sub}/{p.name}", sub), **c})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--eval", type=Path, default=None, help="eval_world.py results, for the face detector's p")
    ap.add_argument("--out", type=Path, default=Path(".cache/eval/video_cues.json"))
    ap.add_argument("--again", action="store_true", help="read the cues stored in --out instead of the videos")
    args = ap.parse_args()
    rows = json.loads(args.out.read_text()) if args.again else measure(args)
    for r in rows:
        r["blinks"] = blink_surprise(r["blink_count"], r["seconds"])
    dev = [r for r in rows if r["split"] == "dev"]
    y = np.array([r["y"] for r in dev])
    reals = [r for r in rows if r["y"] == 0]
    methods = sorted({r["method"] for r in dev if r["y"] == 1})
    face = None
    if args.eval:
        # The face detector alone (its tracks), not the file's fused probability, which the voice can raise.
        p_of = {Path(r["path"]).name: max([t["p"] for t in r["tracks"] if t["p"] is not None], default=None)
                for r in json.loads(args.eval.read_text())["rows"]}
        face = np.array([p_of.get(Path(r["path"]).name) for r in dev], dtype=float)
    print(f"\n{len(dev)} dev videos ({int(y.sum())} fake), {len(reals)} real videos in all (train + dev)")
    print(f"{'cue':14} {'AUC dev':>8} " + " ".join(f"{m[:14]:>14}" for m in methods)
          + f" {'reals >= fake median':>20}" + (f" {'face + cue AUC':>15}" if face is not None else ""))
    for cue in ("blinks", "motion", "colour", "colour_jitter"):
        x = np.array([r[cue] for r in dev], float)
        per = []
        for m in methods:
            keep = np.array([r["y"] == 0 or r["method"] == m for r in dev])
            per.append(auc(y[keep], x[keep]))
        fake_median = np.median(x[y == 1])
        above = np.mean([r[cue] >= fake_median for r in reals])
        line = f"{cue:14} {auc(y, x):8.3f} " + " ".join(f"{a:14.3f}" for a in per) + f" {above:20.0%}"
        if face is not None:
            ok = ~np.isnan(face)
            line += f" {auc(y[ok], (rank(face[ok]) + rank(x[ok])) / 2):15.3f}"
        print(line)
    if face is not None:
        ok = ~np.isnan(face)
        print(f"{'face alone':14} {auc(y[ok], face[ok]):8.3f}  ({int(ok.sum())} videos the face detector scored)")


if __name__ == "__main__":
    main()
