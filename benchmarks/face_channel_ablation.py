"""What each part of the video channel buys: stage-3 runs that left one part out of the training pool
(`deepscreen train --init3 <v1.4> --channel-parts ...`), judged side by side on media made by others.

    python benchmarks/face_channel_ablation.py NAME=WEIGHTS [NAME=WEIGHTS ...] [--out .cache/abl/eval]

The last row is each candidate's dev-video AUC minus the first candidate's, with a paired bootstrap interval over
the videos (24 videos: differences under about 0.1 are not measurable).

Every candidate is judged alike, so only its tensors differ: the shipped model's abstention limits are written into
a copy, its operating point is set by `face_operating_point.py` (the same rule as the shipped one: validation
reals only, no dev set read), and `eval_world.py` scans the dev videos, the world photos and the held-out (a)/(c)
sets. A candidate that already carries an operating point (the shipped weights) is scanned as it is. Copies and scans
are kept in OUT under each NAME and reused: give a new name (or delete them) after retraining.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from deepscreen.config import MODELS_DIR, PROJECT_ROOT

HERE = Path(__file__).parent
SETS = "video_dev,world_dev,sbi_a,faceswap_c"


def _meta(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["deepscreen"])


def prepare(name: str, weights: Path, out: Path) -> Path:
    """A copy of `weights` with the shipped limits and its own operating point (unless it has one)."""
    from deepscreen.training.weights_meta import update_metadata

    if "operating_point" in _meta(weights):
        return weights
    copy = out / f"{name}.safetensors"
    if not copy.exists() or "operating_point" not in _meta(copy):
        shutil.copyfile(weights, copy)
        update_metadata(copy, {"face_limits": _meta(MODELS_DIR / "face_blend.safetensors")["face_limits"]})
        subprocess.run([sys.executable, str(HERE / "face_operating_point.py"), "--weights", str(copy), "--write"],
                       check=True)
    return copy


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from deepscreen.training.metrics import auc

    return float(auc(y, s)) if 0 < y.sum() < len(y) else float("nan")


def summary(rows: list[dict]) -> dict[str, str]:
    """One line of the table: AUC of each set over the files judged, and per-file rates at the default bands."""
    def judged(pred):
        return [r for r in rows if pred(r) and r["p"] is not None]

    def rate(rs, labels):
        return f"{sum(r['label'] in labels for r in rs)}/{len(rs)}"

    out = {}
    for name in ("video_dev", "sbi_a", "faceswap_c"):
        rs = judged(lambda r, n=name: r["set"] == n)
        out[f"AUC {name}"] = f"{_auc(np.array([r['y'] for r in rs]), np.array([r['p'] for r in rs])):.3f}"
    swaps = judged(lambda r: r["set"] == "video_dev" and r["source"] in ("deepfacelive_composite", "ghost_faceswap"))
    dev_real = judged(lambda r: r["set"] == "video_dev" and r["y"] == 0)
    world = judged(lambda r: r["set"] == "world_dev")
    swap_auc = _auc(np.r_[np.zeros(len(dev_real)), np.ones(len(swaps))], np.r_[[r["p"] for r in dev_real],
                                                                                 [r["p"] for r in swaps]])
    out["AUC swaps vs real videos"] = f"{swap_auc:.3f}"
    flagged, review = ("manipulated",), ("manipulated", "suspicious")
    out["real videos flagged / review+"] = f"{rate(dev_real, flagged)} / {rate(dev_real, review)}"
    out["world photos flagged / review+"] = f"{rate(world, flagged)} / {rate(world, review)}"
    out["swaps caught / review+"] = f"{rate(swaps, flagged)} / {rate(swaps, review)}"
    out["swaps above their original"] = paired(rows)
    return out


def paired(rows: list[dict]) -> str:
    """Each dev swap against its own original, same person, scene and codec: a DeepFaceLive composite shows the
    original on the left and the swap on the right (its right-most face track against its left-most), and the
    GHOST swaps are of ghost_orig.webm. How often the swap's track scores higher; the between-video spread of
    real faces' scores, which decides the per-file rates, plays no part here."""
    wins = total = 0
    for r in rows:
        if r.get("source") == "deepfacelive_composite":
            tracks = sorted((t for t in r["tracks"] if t["p"] is not None and "box" in t), key=lambda t: t["box"][0])
            if len(tracks) >= 2:
                wins, total = wins + (tracks[-1]["p"] > tracks[0]["p"]), total + 1
    orig = [r for r in rows if r["path"].endswith("ghost_target__ghost_orig.webm") and r["p"] is not None]
    for r in rows:
        if orig and r.get("source") == "ghost_faceswap" and r["p"] is not None:
            wins, total = wins + (r["p"] > orig[0]["p"]), total + 1
    return f"{wins}/{total}"


def bootstrap_gap(base: list[dict], other: list[dict], n: int = 2000, seed: int = 0) -> str:
    """95 % interval of other's dev-video AUC minus base's, over the same videos resampled (both judged)."""
    def scores(rows):
        return {r["path"]: (r["y"], r["p"]) for r in rows if r["set"] == "video_dev" and r["p"] is not None}

    a, b = scores(base), scores(other)
    paths = sorted(set(a) & set(b))
    y = np.array([a[k][0] for k in paths])
    pa, pb = np.array([a[k][1] for k in paths]), np.array([b[k][1] for k in paths])
    rng, gaps = np.random.default_rng(seed), []
    for _ in range(n):
        i = rng.integers(0, len(paths), len(paths))
        if 0 < y[i].sum() < len(i):
            gaps.append(_auc(y[i], pb[i]) - _auc(y[i], pa[i]))
    lo, hi = np.percentile(gaps, [2.5, 97.5])
    return f"{_auc(y, pb) - _auc(y, pa):+.3f} ({lo:+.2f}..{hi:+.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("candidates", nargs="+", help="NAME=WEIGHTS")
    ap.add_argument("--out", type=Path, default=PROJECT_ROOT / ".cache/abl/eval")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    table, first = {}, None
    for spec in args.candidates:
        name, _, weights = spec.partition("=")
        ready = prepare(name, Path(weights), args.out)
        result = args.out / f"{name}.json"
        if not result.exists():
            subprocess.run([sys.executable, str(HERE / "eval_world.py"), "--out", str(result), "--weights",
                            str(ready), "--sets", SETS], check=True)
        meta, rows = _meta(ready), json.loads(result.read_text())["rows"]
        first = first or rows
        table[name] = {"validation AUC": f"{meta.get('val_auc', float('nan')):.3f}",
                       "parts": meta.get("config", {}).get("pool_channel_parts", "scale,codec,redetect"),
                       **summary(rows), "dev-video AUC vs the first (95 %)": bootstrap_gap(first, rows)}
    keys = list(next(iter(table.values())))
    width = max(map(len, keys))
    print("\n" + " " * width + "  " + "  ".join(f"{n:>22}" for n in table))
    for k in keys:
        print(f"{k:<{width}}  " + "  ".join(f"{table[n][k]:>22}" for n in table))


if __name__ == "__main__":
    main()
