"""The generated-image detector on pictures it never trained on, and its speed.

    python benchmarks/eval_generated.py [--weights models/generated.safetensors] [--limit 0] [--threads 2]

1. False alarms on real photos of other sources, by source (never trained on): ../shared/data/faces/world/dev
   (press/demo photos, FairFace, movie frames, landmark-set samples) and ../shared/data/dev/yonsei/real, each
   scored as shipped and re-encoded the ways users' photos are (JPEG 60 / 75 / 95, WebP 80, resized x0.5 / x0.75 /
   x1.5 then JPEG 85). A row gives the share flagged (calibrated p >= 0.5) and the mean p.
2. Videos made by other people's tools (../shared/data/video/dev, never trained on): SadTalker's talking heads
   (the whole head rendered by a generator from one still photo: the nearest thing in ../shared to a face that never
   existed), GHOST and DeepFaceLive swaps, against the real dev videos; each video's score is the mean logit of
   8 whole frames spread over it, flagged at calibrated p >= 0.5.
3. Yonsei's human-made composites (photoshopped, not generated): what this detector says about them (it is not
   meant to catch them; a high rate would mean it reacts to editing or to the data set, not to generators).
4. Milliseconds per picture (median of repeats, `--threads` torch threads): a one-face 150 px LFW photo, a 720p
   frame, a 12 MP photo.
The held-out tables on the lab's own fakes are printed by `python -m deepscreen.training.generated_train score`.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deepscreen.config import MODELS_DIR, SHARED_DIR
from deepscreen.detectors.generated import GeneratedImageDetector

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import print_table, timed  # noqa: E402

DATA = SHARED_DIR / "data"


def _reencode(rgb: np.ndarray, fmt: str, quality: int, scale: float = 1.0) -> np.ndarray:
    im = Image.fromarray(rgb)
    if scale != 1.0:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, format=fmt, quality=quality)
    buf.seek(0)
    with Image.open(buf) as out:
        return np.asarray(out.convert("RGB"))


VARIANTS = {
    "as shipped": None,
    "JPEG 60": ("JPEG", 60, 1.0), "JPEG 75": ("JPEG", 75, 1.0), "JPEG 95": ("JPEG", 95, 1.0),
    "WebP 80": ("WEBP", 80, 1.0),
    "x0.5+JPEG85": ("JPEG", 85, 0.5), "x0.75+JPEG85": ("JPEG", 85, 0.75), "x1.5+JPEG85": ("JPEG", 85, 1.5),
}


def real_sets(limit: int) -> dict[str, list[Path]]:
    world = DATA / "faces/world"
    sets: dict[str, list[Path]] = {}
    with open(world / "manifest.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] == "dev":
                src = row["source_dataset"]
                src = src if src in ("web_demo_photos", "FairFace", "IMFDB") else "landmark-set samples"
                sets.setdefault(f"world/dev {src}", []).append(world / row["file"])
    sets["yonsei real"] = sorted((DATA / "dev/yonsei/real").glob("*.jpg"))
    if limit:
        sets = {k: v[:limit] for k, v in sets.items()}
    return sets


def video_rows(det: GeneratedImageDetector, frames: int = 8) -> list[tuple]:
    """(group, videos, judged, flagged, AUC against the real dev videos, mean p) for each kind of dev video."""
    from deepscreen.config import Limits, Sampling
    from deepscreen.media import iter_frames, probe
    from deepscreen.training.metrics import auc

    limits, logits = Limits(), {}
    for path in sorted((DATA / "video/dev").glob("*/*")):
        kind = "real" if path.parent.name == "real" else path.name.split("__")[0]
        zs = [s.logit for f in iter_frames(path, probe(path, limits), Sampling(frames=frames), limits)
              if (s := det.score_image(f.rgb)) is not None]
        logits.setdefault(kind, []).append(float(np.mean(zs)) if zs else None)
    real = np.array([z for z in logits.get("real", []) if z is not None])
    rows = []
    for kind, zs in sorted(logits.items(), key=lambda kv: kv[0] != "real"):
        z = np.array([v for v in zs if v is not None])
        p = np.array([det.calibrate(v) for v in z])
        y = np.r_[np.zeros(len(real)), np.ones(len(z))]
        area = "" if kind == "real" or not len(z) else f"{auc(y, np.r_[real, z]):.3f}"
        rows.append((kind, len(zs), len(z), f"{int((p >= 0.5).sum())}/{len(z)}", area,
                     f"{p.mean():.2f}" if len(p) else "n/a"))
    return rows


def print_videos(det: GeneratedImageDetector) -> None:
    print("\n## Videos made by other people's tools (dev; 8 whole frames each, never trained on)\n")
    header = ("videos", "n", "judged", "flagged", "AUC vs real dev videos", "mean p")
    for r in (header, ("---",) * len(header), *video_rows(det)):
        print("| " + " | ".join(map(str, r)) + " |")


def score(det: GeneratedImageDetector, rgb: np.ndarray) -> float | None:
    s = det.score_image(rgb)
    return None if s is None else s.probability


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=str(MODELS_DIR / "generated.safetensors"))
    ap.add_argument("--limit", type=int, default=0, help="pictures per source (0 = all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--videos-only", action="store_true", help="only the dev videos (section 2)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    det = GeneratedImageDetector(args.weights)
    if args.videos_only:
        return print_videos(det)

    print("## Real photos of other sources (never trained on): share flagged at p >= 0.5 (mean p)\n")
    header = ["source", "n"] + list(VARIANTS)
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    pooled = {v: [] for v in VARIANTS}
    for name, paths in real_sets(args.limit).items():
        ps = {v: [] for v in VARIANTS}
        for path in paths:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))
            for v, how in VARIANTS.items():
                p = score(det, rgb if how is None else _reencode(rgb, *how))
                if p is not None:
                    ps[v].append(p)
                    pooled[v].append(p)
        cells = [f"{np.mean(np.array(x) >= 0.5):.1%} ({np.mean(x):.2f})" if x else "n/a" for x in ps.values()]
        print(f"| {name} | {len(paths)} | " + " | ".join(cells) + " |")
    cells = [f"{np.mean(np.array(x) >= 0.5):.1%} ({np.mean(x):.2f})" if x else "n/a" for x in pooled.values()]
    print(f"| **all real** | {len(pooled['as shipped'])} | " + " | ".join(cells) + " |")

    print_videos(det)

    print("\n## Yonsei composites (human-made, photoshopped; not generated): share flagged at p >= 0.5\n")
    yon = sorted((DATA / "dev/yonsei/fake").glob("*.jpg"))
    if args.limit:
        yon = yon[:args.limit]
    by_level: dict[str, list[float]] = {}
    for path in yon:
        with Image.open(path) as im:
            p = score(det, np.asarray(im.convert("RGB")))
        if p is not None:
            by_level.setdefault(path.name.split("_")[0], []).append(p)
    for level, ps in sorted(by_level.items()):
        print(f"- {level}: {np.mean(np.array(ps) >= 0.5):.1%} of {len(ps)} (mean p {np.mean(ps):.2f})")

    if args.skip_speed:
        return
    print(f"\n## Speed ({args.threads} torch threads, median of 30)\n")
    lfw = next(iter(sorted((DATA / "faces/lfw").glob("*/*.jpg"))))
    with Image.open(lfw) as im:
        face = np.asarray(im.convert("RGB"))
    rng = np.random.default_rng(0)
    frame = np.asarray(Image.fromarray(face).resize((1280, 720), Image.BICUBIC))
    big = (rng.integers(0, 256, (3000, 4000, 3))).astype(np.uint8)
    rows = []
    for name, rgb in (("one-face photo 150 px (LFW)", face), ("720p frame", frame), ("12 MP photo", big)):
        det.score_image(rgb)
        t = timed(lambda: det.score_image(rgb), 30)
        rows.append((name, f"{np.median(t) * 1000:.1f} ms", "<= 15 ms"))
    print_table(rows)


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"\n({time.time() - t0:.0f} s)")
