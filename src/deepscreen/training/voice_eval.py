"""Scoring voice models as the scanner scores them: utterance logits per source and channel on one speaker split,
the calibration fitted on the validation speakers, and the per-generator test table (EER, AUC, detection and
false-alarm rates) of trained runs or committed weights."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..detectors.voice import cut_windows, speech_windows, utterance_logit
from ..detectors.voicenet import (RATE, WINDOW_S, Branch, calibrated_logits, load_weights, model_from_state,
                                  score_windows)
from ..media.speech import SpeechFinder
from ..synthesis.voice import GENERATORS, UNSEEN, codec_roundtrip
from .metrics import auc, eer, fit_platt, sigmoid
from .recipe import VOICE
from .voice_config import VoiceTrainConfig, config_of, tested_generators, trained_generators
from .voice_data import Clips, build

WIN = int(WINDOW_S * RATE)
CHANNELS = VOICE.channels  # the test and calibration channels: as recorded, and two codecs

Scorer = Callable[[np.ndarray], np.ndarray]  # (N, samples) windows -> (N,) logits
Scores = dict[str, dict[str, list[float]]]  # source -> channel -> utterance logits


def model_scorer(model: torch.nn.Module, frontend: str) -> Scorer:
    return lambda windows: score_windows(model, windows, frontend)


def scanner_windows(x: np.ndarray, channel: str, finder: SpeechFinder) -> np.ndarray:
    """An utterance's first 8 s through `channel` ("clean" or a codec), cut as the scanner cuts it: 2 s windows over
    the speech silero-vad finds (the start, when it finds none)."""
    x = x[: int(8 * RATE)]
    if channel != "clean":
        x = codec_roundtrip(x, channel)
    return cut_windows(x, speech_windows(finder(x)[1], len(x)) or [(0, min(len(x), WIN))])


def evaluate_views(scorer: Callable[[np.ndarray], np.ndarray], views: dict[str, Callable[[np.ndarray], np.ndarray]],
                   data: dict[str, Clips], split: str, sources: list[str],
                   channels: tuple[str, ...] = ("clean",)) -> dict[str, Scores]:
    """Utterance-level logits per (source, channel) on one speaker split, through the scanner's own path:
    speech segments from silero-vad, 2 s windows over them, the top-half mean of window logits. `scorer` gives
    one row of window logits per model, (models, windows); each view turns them into one score per window (a
    model alone, or the models combined), so several tables come from one pass over decoding, codecs and
    models."""
    finder = SpeechFinder()
    out: dict[str, Scores] = {name: {} for name in views}
    for src in ["real", *sources]:
        clips = data[src]
        for ch in channels:
            logits: dict[str, list[float]] = {name: [] for name in views}
            for i in clips.subset(split):
                z = scorer(scanner_windows(clips.clip(i), ch, finder))
                for name, view in views.items():
                    logits[name].append(utterance_logit(view(z)))
            for name in views:
                out[name].setdefault(src, {})[ch] = logits[name]
    return out


def evaluate(scorer: Scorer, data: dict[str, Clips], split: str, sources: list[str],
             channels: tuple[str, ...] = ("clean",)) -> Scores:
    """`evaluate_views` for one scorer of (windows,) logits."""
    return evaluate_views(lambda w: scorer(w)[None], {"": lambda z: z[0]}, data, split, sources, channels)[""]


def _eer_auc(real: list[float], fake: list[float]) -> tuple[float, float]:
    y = np.r_[np.zeros(len(real)), np.ones(len(fake))]
    s = np.r_[real, fake]
    return eer(y, s)[0], auc(y, s)


def fit_calibration(scorer: Scorer, data: dict[str, Clips], gens: list[str]) -> tuple[float, float]:
    """Platt scaling on held-out *validation* speakers, every generator in training, clean and coded."""
    val = evaluate(scorer, data, "val", gens, CHANNELS)
    # Classes balanced (each real utterance counted once per generator) so p = 0.5 means even odds, as for the
    # face detector: with one real per five fakes the fit would learn a 5:1 prior and flag real speech.
    real = [z for ch in val["real"].values() for z in ch] * len(gens)
    fake = [z for g in gens for ch in val[g].values() for z in ch]
    return fit_platt(np.r_[np.zeros(len(real)), np.ones(len(fake))], np.r_[real, fake])


def calibrated(scorer: Scorer, platt: tuple[float, float]) -> Scorer:
    a, b = platt
    return lambda windows: a * scorer(windows) + b


def score_test_split(scorer: Scorer, cfg: VoiceTrainConfig, data: dict[str, Clips]) -> dict:
    """The test table of one scorer of calibrated log-odds (`calibrated`, or the scanner's `calibrated_max`)."""
    return table_of(evaluate(scorer, data, "test", tested_generators(cfg), CHANNELS), cfg)


def _rates(real: dict[str, list[float]], fake: list[dict[str, list[float]]]) -> dict:
    """EER and AUC of fake against real utterances, clean and pooled with their MP3/Opus copies."""
    e, u = _eer_auc(real["clean"], [z for f in fake for z in f["clean"]])
    e_all, u_all = _eer_auc([z for v in real.values() for z in v], [z for f in fake for v in f.values() for z in v])
    return {"eer": e, "auc": u, "eer_coded": e_all, "auc_coded": u_all}


def table_of(test: Scores, cfg: VoiceTrainConfig) -> dict:
    """Calibrated utterance log-odds of the test speakers -> per generator EER/AUC (clean, and pooled with MP3/Opus
    copies of both classes), the detection rate and the real-speech false-positive rate at p = 0.5. Generators in
    cfg.exclude are marked held out; UNSEEN ones (no recipe trains on them) are marked unseen unless these weights
    were fine-tuned on them (cfg.add)."""
    report = {"generators": {}}
    p = lambda zs: sigmoid(np.asarray(zs))  # noqa: E731
    for g in tested_generators(cfg):
        report["generators"][g] = {**_rates(test["real"], [test[g]]),
                                   "tpr_at_0.5": float(np.mean(p(test[g]["clean"]) >= 0.5)),
                                   "held_out": g in cfg.exclude, "unseen": g in UNSEEN and g not in cfg.add}
    trained = trained_generators(cfg)
    if trained:  # in-domain: every generator seen in training, pooled against the same real utterances
        report["in_domain"] = _rates(test["real"], [test[g] for g in trained])
    report["real_fpr_at_0.5"] = {ch: float(np.mean(p(v) >= 0.5)) for ch, v in test["real"].items()}
    report["counts"] = {"test_real": len(test["real"]["clean"])}
    return report


def assess(weights: list[Path], cache: Path) -> dict[str, dict]:
    """The test tables of committed weights, with the calibration they carry (`train-voice --eval-only`): each model
    alone and, for several files, as the scanner combines them (`calibrated_max`), under the key "combined"."""
    torch.set_num_threads(VOICE.threads)
    loaded = [load_weights(w) for w in weights]
    branches = [Branch.of(m, meta) for m, meta in loaded]
    return _assess_branches(branches, [config_of(meta) for _, meta in loaded], [0] * len(loaded), cache)


def assess_runs(runs: list[Path], cache: Path, data: dict[str, Clips] | None = None) -> dict[str, dict]:
    """The same for training runs (their last checkpoint and the calibration in their report), e.g. the filterbank
    model trained without a generator and the phase model: one row of the combination's leave-one-out table."""
    torch.set_num_threads(VOICE.threads)
    branches, cfgs, times = [], [], []
    for run in runs:
        state = torch.load(run / "checkpoint.pt", weights_only=False)
        cfg = VoiceTrainConfig(**{**asdict(VoiceTrainConfig()), **state["config"]})
        model = model_from_state(state["model"], cfg.frontend, cfg.width, cfg.head)
        report = json.loads((run / "report.json").read_text())
        branches.append(Branch(model, cfg.frontend, tuple(report["platt"])))
        cfgs.append(cfg)
        times.append(report["train_s"])
    return _assess_branches(branches, cfgs, times, cache, data)


def _assess_branches(branches: list[Branch], cfgs: list[VoiceTrainConfig], times: list[float],
                     cache: Path, data: dict[str, Clips] | None = None) -> dict[str, dict]:
    trained = {g for c in cfgs for g in trained_generators(c)}
    combined = VoiceTrainConfig(steps=cfgs[0].steps, exclude=[g for g in GENERATORS if g not in trained],
                                add=sorted({g for c in cfgs for g in c.add}),
                                frontend="+".join(c.frontend for c in cfgs))
    data = data if data is not None else build(cache, tested_generators(combined))
    views = {c.frontend: (lambda z, i=i: z[i]) for i, c in enumerate(cfgs)}
    if len(branches) > 1:
        views["combined"] = lambda z: z.max(axis=0)  # calibrated_max, as the scanner scores
    test = evaluate_views(lambda w: calibrated_logits(branches, w), views, data, "test", tested_generators(combined),
                          CHANNELS)
    settings = {**{c.frontend: (c, t) for c, t in zip(cfgs, times)}, "combined": (combined, sum(times))}
    return {name: {"config": asdict(settings[name][0]), "train_s": settings[name][1],
                   **table_of(test[name], settings[name][0])} for name in views}
