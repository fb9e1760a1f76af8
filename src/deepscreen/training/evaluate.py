"""`deepscreen evaluate`: score a labelled folder through the full scanner (decode, detect, align, detect, fuse).

Evaluating through `Scanner.scan` rather than on pre-cut crops measures what users get, face-detection misses
included. Files where no face was found are counted separately ('abstained') and left out of the metrics.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import cv2
import numpy as np

from . import metrics


def labelled_files(folder: Path, limit: int = 0) -> list[tuple[Path, int, str]]:
    """(file, 0 real / 1 fake, source) under folder/real and folder/fake; the source is the first subfolder below
    real/ or fake/ ("." for files directly in them). Symlinked subfolders are followed, so an evaluation folder can
    gather sets that live elsewhere."""
    out = []
    for name, y in (("real", 0), ("fake", 1)):
        sub = folder / name
        if not sub.is_dir():
            raise SystemExit(f"deepscreen: error: {folder}: needs real/ and fake/ subfolders ({sub} is missing)")
        files = []
        for root, dirs, names in os.walk(sub, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            files += [Path(root) / n for n in sorted(names) if not n.startswith(".")]
        if limit and len(files) > limit:
            files = [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]
        for p in files:
            parts = p.relative_to(sub).parts
            out.append((p, y, parts[0] if len(parts) > 1 else "."))
    return out


def evaluate_folder(scanner, folder: Path, limit: int = 0, scores_csv: Path | None = None,
                    progress: bool = False) -> dict:
    """Metrics pooled over the folder, and per source: how many real files are flagged (p >= the manipulated
    band) and sent to review (p >= the suspicious band), how many fakes are caught, AUC, abstentions."""
    from rich.progress import track

    items = labelled_files(folder, limit)
    rows = []
    for path, y, source in track(items, description="evaluating", disable=not progress, transient=True):
        v = scanner.scan(path)
        rows.append((str(path), y, v.probability, v.label, f"{'real' if y == 0 else 'fake'}/{source}"))
    if scores_csv:
        with open(scores_csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "probability", "verdict", "source"])
            w.writerows(rows)
    bands = scanner.config.thresholds
    result = {"folder": str(folder), **_rates(rows, bands)}
    scored = [(y, p) for _, y, p, _, _ in rows if p is not None]
    if scored and len({y for y, _ in scored}) == 2:
        y, p = map(np.array, zip(*scored))
        result.update(metrics.summary(y, p, threshold=bands.manipulated))
        result["flag_rate_real"] = float(np.mean(p[y == 0] >= bands.suspicious))
    real_p = np.array([p for _, y, p, _, _ in rows if y == 0 and p is not None])
    result["sources"] = {}
    for source in dict.fromkeys(r[4] for r in rows):
        mine = [r for r in rows if r[4] == source]
        entry = _rates(mine, bands)
        fake_p = np.array([p for _, y, p, _, _ in mine if y == 1 and p is not None])
        if len(fake_p) and len(real_p):  # this source's fakes against every real file
            entry["auc"] = metrics.auc(np.r_[np.zeros(len(real_p)), np.ones(len(fake_p))], np.r_[real_p, fake_p])
        result["sources"][source] = entry
    return result


def _rates(rows, bands) -> dict:
    scored = [r for r in rows if r[2] is not None]
    real = [r[2] for r in scored if r[1] == 0]
    fake = [r[2] for r in scored if r[1] == 1]
    return {
        "files": len(rows),
        "abstained": sum(1 for r in rows if r[2] is None and r[3] != "error"),
        "errors": sum(1 for r in rows if r[3] == "error"),
        "real_scored": len(real), "fake_scored": len(fake),
        "real_flagged": float(np.mean([p >= bands.manipulated for p in real])) if real else None,
        "real_review_or_worse": float(np.mean([p >= bands.suspicious for p in real])) if real else None,
        "fakes_caught": float(np.mean([p >= bands.manipulated for p in fake])) if fake else None,
    }


def format_metrics(r: dict) -> str:
    lines = [f"folder            {r['folder']}",
             f"files             {r['files']}  (abstained: {r['abstained']}, errors: {r['errors']})"]
    if "auc" in r:
        lines += [
            f"scored            real {r['n_real']}  fake {r['n_fake']}",
            f"AUC               {r['auc']:.4f}",
            f"EER               {r['eer']:.2%}  (at p = {r['eer_threshold']:.3f})",
            f"log-loss          {r['log_loss']:.4f}",
            f"calibration (ECE) {r['ece']:.4f}",
            f"at p >= {r['threshold']:.2f}     accuracy {r['accuracy']:.2%}  "
            f"TPR {r['tpr']:.2%}  FPR {r['fpr']:.2%}",
            f"real files flagged (>= suspicious band) {r['flag_rate_real']:.2%}",
        ]
    else:
        lines.append("not enough scored files of both classes for metrics")
    pct = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
    lines += ["", f"{'source':32} {'files':>5} {'abst.':>5} {'real flagged':>12} {'real review+':>12} "
                  f"{'fakes caught':>12} {'AUC':>6}"]
    for source, e in r.get("sources", {}).items():
        auc = f"{e['auc']:.3f}" if "auc" in e else ""
        lines.append(f"{source[:32]:32} {e['files']:5d} {e['abstained']:5d} {pct(e['real_flagged']):>12} "
                     f"{pct(e['real_review_or_worse']):>12} {pct(e['fakes_caught']):>12} {auc:>6}")
    return "\n".join(lines)


METHODS = ("sbi", "faceswap")


def write_forgery_folder(data: Path, out: Path, split: str, limit: int, seed: int, cache: Path,
                         method: str = "sbi", candidates: int = 16) -> int:
    """Held-out forgeries and their real originals at the source images' own resolution, for `evaluate`.

    method 'sbi': self-blends of the split's people (synthesis.sbi: the kind the detector is trained on).
    'faceswap': classic landmark face swaps with Poisson blending (synthesis.faceswap, a method it never sees in
    training), each face given the best-fitting of `candidates` random faces of other people of the same split; a
    face too small to swap is left out, with its real original. Returns the number of pairs written.
    Real and fake are both re-saved as JPEG quality 95, so the file format cannot tell them apart. `forgeries.csv`
    beside real/ and fake/ says how each forgery was made (for scores per kind)."""
    from .data import load_faceset
    from ..synthesis.faceswap import face_swap, pick_donor
    from ..synthesis.sbi import self_blend

    if method not in METHODS:
        raise ValueError(f"method {method!r}: use one of {', '.join(METHODS)}")
    faces = load_faceset(data, cache).split(split)
    people = np.array([p.split("/")[0] for p in faces.paths])
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(faces.paths))
    if limit:
        order = order[:limit]
    for sub in ("real", "fake"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    manifest = [("file", "kind", "donor")]
    for i in order:
        rgb = faces.image(i)
        if method == "sbi":
            blend, donor = self_blend(rgb, faces.landmarks[i], rng), ""
        else:
            others = np.flatnonzero(people != people[i])
            if not len(others):
                raise ValueError(f"{data}: face swaps need faces of at least two people in the {split} split")
            j = pick_donor(faces.landmarks[i], list(rng.choice(others, min(candidates, len(others)), replace=False)),
                           faces.landmarks)
            try:
                blend = face_swap(rgb, faces.landmarks[i], faces.image(j), faces.landmarks[j], rng)
            except ValueError:  # too small to swap
                continue
            donor = faces.paths[j]
        name = faces.paths[i].replace("/", "__")
        for sub, img in (("real", rgb), ("fake", blend.image)):
            cv2.imwrite(str(out / sub / name), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        manifest.append((name, blend.kind, donor))
    with open(out / "forgeries.csv", "w", newline="") as f:
        csv.writer(f).writerows(manifest)
    return len(manifest) - 1


def synthesize(out: Path, data: Path, split: str, limit: int, seed: int, method: str, cache: Path) -> str:
    """`deepscreen synthesize`: the forgery folder written; returns the line that says what was written. Raises
    FlagError, before writing anything, for a method or split it cannot make."""
    from .recipe import FlagError

    if method not in METHODS:
        raise FlagError(f"--method {method!r}: use one of {', '.join(METHODS)}")
    try:
        n = write_forgery_folder(data, out, split, limit, seed, cache=cache, method=method)
    except ValueError as err:
        raise FlagError(str(err)) from None
    kind = "self-blended" if method == "sbi" else "face-swapped"
    return f"wrote {n} real and {n} {kind} images to {out}"


def evaluate(scanner, folder: Path, limit: int = 0, scores_csv: Path | None = None, as_json: bool = False,
             progress: bool = False) -> str:
    """`deepscreen evaluate`: the metrics of `scanner` on a labelled folder, as text or JSON."""
    result = evaluate_folder(scanner, folder, limit=limit, scores_csv=scores_csv, progress=progress)
    return json.dumps(result, indent=2) if as_json else format_metrics(result)

