"""Scan the dev sets of media made by others (and our held-out forgeries) through the full scanner and keep, per
file, the verdict and every face observation (logit, face width, sharpness), so that track rules, abstention
limits and thresholds can be measured without scanning again.

    python benchmarks/eval_world.py --out .cache/eval/v2.json [--weights models/face_blend.safetensors]
        [--sets video_dev,world_dev,sbi_a,faceswap_c,yonsei] [--limit 400]
    python benchmarks/eval_world.py --compare .cache/eval/v2.json [WEIGHTS]   # the same files, other track rules

Sets (../shared/data; their READMEs say what each is): video_dev (dev/real and dev/fake videos, by method),
world_dev (real photos of other sources, by source), sbi_a / faceswap_c (held-out LFW people and their self-blends
or classic face swaps, made by `deepscreen synthesize` into .cache/eval if missing), yonsei (human-made
composites). Prints per source: files, scored, real flagged / sent to review, fakes caught, AUC.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from deepscreen.config import PROJECT_ROOT, SHARED_DIR, ScanConfig
from deepscreen.scan import Scanner, expand_paths

DATA = SHARED_DIR / "data"
EVAL = PROJECT_ROOT / ".cache/eval"


def _manifest(path: Path, key: str, value: str) -> dict[str, str]:
    with open(path, newline="") as f:
        return {r[key]: r[value] for r in csv.DictReader(f)}


def items(sets: list[str], limit: int) -> list[tuple[str, str, int, Path]]:
    """(set, source, label 0 real / 1 fake, path)."""
    out = []
    if "video_dev" in sets:
        method = _manifest(DATA / "video/manifest.csv", "file", "method")
        for label, sub in ((0, "real"), (1, "fake")):
            for p in sorted((DATA / "video/dev" / sub).glob("*")):
                out.append(("video_dev", method.get(f"dev/{sub}/{p.name}", sub), label, p))
    if "world_dev" in sets:
        source = _manifest(DATA / "faces/world/manifest.csv", "file", "source_dataset")
        for p in sorted((DATA / "faces/world/dev").glob("*")):
            out.append(("world_dev", source.get(f"dev/{p.name}", "?"), 0, p))
    for name, method in (("sbi_a", "sbi"), ("faceswap_c", "faceswap")):
        if name in sets:
            folder = EVAL / name
            if not (folder / "fake").is_dir():
                subprocess.run([sys.executable, "-m", "deepscreen.cli", "synthesize", str(folder), "--split", "test",
                                "--seed", "2", "--method", method], check=True)
            for label, sub in ((0, "real"), (1, "fake")):
                files = [p for p in expand_paths([folder / sub]) if p.is_file()]
                out += [(name, sub, label, p) for p in _spread(files, limit)]
    if "yonsei" in sets:
        for label, sub in ((0, "real"), (1, "fake")):
            files = [p for p in expand_paths([DATA / "dev/yonsei" / sub]) if p.is_file()]
            out += [("yonsei", sub, label, p) for p in _spread(files, limit)]
    return out


def _spread(files: list[Path], limit: int) -> list[Path]:
    if not limit or len(files) <= limit:
        return files
    return [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--sets", default="video_dev,world_dev,sbi_a,faceswap_c")
    ap.add_argument("--limit", type=int, default=400, help="files per class of the synthesized sets and yonsei")
    args = ap.parse_args()
    scanner = Scanner(ScanConfig(keep_crops=False))
    if args.weights:
        from deepscreen.detectors.face_blend import FaceBlendDetector

        scanner.face_detectors[0] = FaceBlendDetector(args.weights)
    todo = items(args.sets.split(","), args.limit)
    rows, t0 = [], time.time()
    for k, (name, source, label, path) in enumerate(todo):
        v = scanner.scan(path)
        rows.append({"set": name, "source": source, "y": label, "path": str(path), "kind": v.kind,
                     "p": v.probability, "label": v.label,
                     "voice_p": v.voice.probability if v.voice else None,
                     "tracks": [{"p": t.probability,
                                 "box": list(t.box), "logits": [o.logit for o in t.observations],
                                 "widths": [o.box[2] - o.box[0] for o in t.observations],
                                 "sharp": [o.sharpness for o in t.observations]} for t in v.faces]})
        if k % 50 == 0:
            print(f"{k}/{len(todo)} {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"models": [m.__dict__ for m in scanner.models()], "rows": rows}))
    print_table(rows)
    print_fusion(rows)


def print_table(rows: list[dict], threshold: float = 0.5, review: float = 0.25) -> None:
    from deepscreen.training.metrics import auc

    print(f"{'set':12} {'source':28} {'files':>5} {'scored':>6} {'flagged':>8} {'review+':>8} {'AUC':>6}")
    for name in dict.fromkeys(r["set"] for r in rows):
        mine = [r for r in rows if r["set"] == name]
        for source in [*dict.fromkeys(r["source"] for r in mine), "all"]:
            rs = [r for r in mine if source in ("all", r["source"])]
            scored = [r for r in rs if r["p"] is not None]
            flagged = np.mean([r["p"] >= threshold for r in scored]) if scored else float("nan")
            rev = np.mean([r["p"] >= review for r in scored]) if scored else float("nan")
            ys = {r["y"] for r in scored}
            a = auc(np.array([r["y"] for r in scored]), np.array([r["p"] for r in scored])) if len(ys) == 2 else None
            print(f"{name:12} {source[:28]:28} {len(rs):5d} {len(scored):6d} {flagged:8.1%} {rev:8.1%} "
                  f"{'' if a is None else f'{a:.3f}':>6}")


def print_fusion(rows: list[dict]) -> None:
    """Issue #37's fusion bar: on the files where face and voice both speak (dev videos with a sound track), the
    fused probability (as scanned: the larger of the two) against each detector alone, by AUC and log-loss, on the
    same files. A detector that abstains on a file leaves it out of every column, so all columns see one set."""
    from deepscreen.training.metrics import auc, log_loss

    both = [r for r in rows if r.get("voice_p") is not None and r["tracks"]
            and any(t["p"] is not None for t in r["tracks"])]
    if not both:
        return
    y = np.array([r["y"] for r in both])
    columns = {"face alone": [max(t["p"] for t in r["tracks"] if t["p"] is not None) for r in both],
               "voice alone": [r["voice_p"] for r in both], "fused (as scanned)": [r["p"] for r in both]}
    print(f"\nfusion, {len(both)} files with a face and a voice ({int(y.sum())} fake):")
    print(f"{'':20} {'AUC':>6} {'log-loss':>9}")
    for name, ps in columns.items():
        p = np.array(ps, float)
        a = auc(y, p) if len(set(y)) == 2 else float("nan")
        print(f"{name:20} {a:6.3f} {log_loss(y, p):9.3f}")


def rescore(rows: list[dict], calibrate, limits, rule: str = "median") -> list[dict]:
    """The stored observations re-fused without scanning again: `rule` 'median' (the scanner's: judged frames'
    median weighted by detail, with the abstentions of `limits`) or 'tophalf' (the rule before v2.0: mean logit of
    the most suspicious half, every frame judged). For measuring what the track rule and the limits each buy."""
    from deepscreen.fusion import MIN_VIDEO_FRAMES, track_logit, unjudgeable
    from deepscreen.verdict import FaceObservation

    out = []
    for r in rows:
        ps = []
        for t in r["tracks"]:
            obs = list(zip(t["logits"], t["widths"], t["sharp"]))
            if rule == "tophalf":
                z = np.sort(t["logits"])[::-1]
                ps.append(calibrate(float(z[: max(1, (len(z) + 1) // 2)].mean())))
                continue
            ok = [(z, s) for z, w, s in obs
                  if unjudgeable(FaceObservation(0, 0.0, (0, 0, w, w), 0.0, z, s), limits) is None]
            if len(ok) >= (MIN_VIDEO_FRAMES if r["kind"] == "video" else 1):
                ps.append(calibrate(track_logit([z for z, _ in ok], [s for _, s in ok])))
        out.append({**r, "p": max(ps) if ps else None})
    return out


def compare(path: Path, weights: Path | None) -> None:
    """Print the tables of a results file as scanned, and re-fused with the rule before v2.0 and without limits."""
    from deepscreen.detectors import FaceLimits
    from deepscreen.detectors.face_blend import FaceBlendDetector

    rows = json.loads(path.read_text())["rows"]
    det = FaceBlendDetector(weights) if weights else FaceBlendDetector()
    for name, rescored in (("as scanned", rows),
                           ("median rule, the model's limits", rescore(rows, det.calibrate, det.limits)),
                           ("median rule, no limits", rescore(rows, det.calibrate, FaceLimits())),
                           ("top-half rule, no limits", rescore(rows, det.calibrate, FaceLimits(), "tophalf"))):
        print(f"\n== {name}")
        print_table(rescored)
    print_fusion(rows)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--compare":
        compare(Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None)
    else:
        main()
