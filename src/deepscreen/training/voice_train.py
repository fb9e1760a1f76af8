"""Train and evaluate the voice detector (VoiceNet) on real LibriSpeech and its vocoder copies, split by speaker.

  deepscreen train-voice                       # all generators -> models/voice.safetensors (+ report)
  deepscreen train-voice --exclude hifigan     # one leave-one-generator-out run
  deepscreen train-voice --logo                # every leave-one-out run, then the table for the model card

Windows are 2 s crops; both classes go through the same random channel (codec, noise, band limit, gain) so the
model cannot learn "compressed = real" or "clean = fake". Resumable: a checkpoint is written every 100 steps.
"""

from __future__ import annotations

import json
import logging
import math
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..detectors.voice import cut_windows, speech_windows, utterance_logit
from ..detectors.voicenet import (RATE, WINDOW_S, Branch, PhaseNovelty, VoiceNet, calibrated_logits, features,
                                  load_weights, model_from_state, oc_softmax_loss, save_weights, score_windows)
from ..media.speech import SpeechFinder
from ..synthesis.voice import GENERATORS, OPTIONAL, UNSEEN, codec_roundtrip
from .metrics import auc, eer, fit_platt, sigmoid
from .voice_data import Clips, build, build_channels

log = logging.getLogger(__name__)
WIN = int(WINDOW_S * RATE)


@dataclass
class VoiceTrainConfig:
    steps: int = 4000  # the committed recipe (models/voice.md)
    batch: int = 32
    lr: float = 2e-3
    width: int = 16
    exclude: list[str] = field(default_factory=list)  # generators held out of training (LOGO)
    add: list[str] = field(default_factory=list)  # OPTIONAL generators trained on as well (candidates)
    seed: int = 0
    p_degrade: float = 0.6
    frontend: str = "linear"  # or "spec" (256 bins) / "mel" / "linear_if": the front-end ablation in models/voice.md
    head: str = "linear"  # or "oc": one-class softmax (VoiceNet)
    augment: str = "none"  # or "eq": random equaliser + mild distortion on half the windows of both classes


def _crop(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(x) <= WIN:
        return np.pad(x, (0, WIN - len(x)))
    start = int(rng.integers(0, len(x) - WIN + 1))
    return x[start:start + WIN]


AUGMENTS = ("none", "eq")


def random_eq(x: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """On a random `p` of the windows (real and fake alike): a random FIR equaliser (gains of -9..+9 dB at 10 random
    frequencies) and a mild odd-order distortion, in the spirit of RawBoost's convolutive noise (Tak et al. 2022).
    Microphones, rooms and cheap speakers colour the spectrum the same way; the aim is a model that cannot rely on
    a generator's spectral envelope and has to find traces that survive recolouring."""
    from scipy.signal import firwin2, oaconvolve

    out = x.copy()
    for i in np.flatnonzero(rng.random(len(x)) < p):
        freqs = np.r_[0.0, np.sort(rng.uniform(0.02, 0.98, 10)), 1.0]
        gains = 10 ** (rng.uniform(-9, 9, len(freqs)) / 20)
        y = oaconvolve(x[i], firwin2(129, freqs, gains), mode="same")
        y /= np.abs(y).max() + 1e-8
        k = rng.uniform(0, 0.3)
        out[i] = (y + k * y**3) / (1 + k) * np.abs(x[i]).max()  # the input's peak level: no clipping
    return out.astype(np.float32)


def _batch(clean: dict[str, Clips], channels: dict[str, Clips], idx: dict, gens: list[str], n: int,
           p_degrade: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n windows, half real, half from a random training generator; each clean or from the channel pool."""
    xs, ys = [], []
    for k in range(n):
        fake = k % 2 == 1
        src = gens[int(rng.integers(len(gens)))] if fake else "real"
        pool = "channel" if rng.random() < p_degrade else "clean"
        clips = channels[src] if pool == "channel" else clean[src]
        choices = idx[pool, src]
        xs.append(_crop(clips.clip(choices[int(rng.integers(len(choices)))]), rng))
        ys.append(float(fake))
    return np.stack(xs).astype(np.float32), np.array(ys, np.float32)


Scorer = Callable[[np.ndarray], np.ndarray]  # (N, samples) windows -> (N,) logits


def model_scorer(model: torch.nn.Module, frontend: str) -> Scorer:
    return lambda windows: score_windows(model, windows, frontend)


Scores = dict[str, dict[str, list[float]]]  # source -> channel -> utterance logits
VERSION = "1.2"  # of the recipe; written into the weights' metadata
# The models the scanner combines (`train-voice --ensemble`). The waveform model of v1.1 is left out since v1.2:
# the phase model catches what it caught without training on it, and it pulled held-out rows the wrong way.
ENSEMBLE = ("linear", "phase")
CHANNELS = ("clean", "mp3_64k", "opus_24k")  # the test and calibration channels: as recorded, and two codecs
NOVELTY_QUANTILE = 0.999  # PhaseNovelty: p = 0.5 this far out in new speakers' real speech (`_fit_novelty`)


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


def train(cfg: VoiceTrainConfig, cache: Path, work: Path, out: Path | None = None, progress=None,
          test: bool = True) -> dict:
    """Train (or resume) one model, fit its calibration, save it to `out` if given. `test=False` skips the test
    table (the caller scores several models in one pass, `assess_runs`)."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(2)
    gens = trained_generators(cfg)
    data = build(cache, gens)  # normally made by the caller (with progress); here loaded
    channels = {name: build_channels(cache, name, data[name]) for name in ["real", *gens]}
    if cfg.frontend == "phase":
        return _fit_novelty(cfg, cache, work, out, data, channels, test)
    idx = {("clean", name): data[name].subset("train") for name in channels}
    idx.update({("channel", name): clips.subset("train") for name, clips in channels.items()})
    model = VoiceNet(cfg.width, cfg.frontend, cfg.head)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    work.mkdir(parents=True, exist_ok=True)
    ckpt, step, trained_before = work / "checkpoint.pt", 0, 0.0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        if {**asdict(VoiceTrainConfig()), **state["config"]} == asdict(cfg):  # settings added later: defaults
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            step = state["step"]
            trained_before = state.get("train_s", 0.0)
            log.info("resumed at step %d", step)
    rng = np.random.default_rng(zlib.crc32(f"{cfg.seed}:{step}".encode()))
    loss_fn = oc_softmax_loss if cfg.head == "oc" else torch.nn.BCEWithLogitsLoss()
    started = time.time()
    model.train()
    while step < cfg.steps:
        x, y = _batch(data, channels, idx, gens, cfg.batch, cfg.p_degrade, rng)
        if cfg.augment == "eq":
            x = random_eq(x, rng)
        loss = loss_fn(model(features(x, cfg.frontend)), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        if progress:
            progress(step, cfg.steps, loss.item())
        if step % 100 == 0 or step == cfg.steps:
            torch.save({"config": asdict(cfg), "model": model.state_dict(), "opt": opt.state_dict(),
                        "sched": sched.state_dict(), "step": step,
                        "train_s": trained_before + time.time() - started}, ckpt)
    model.eval()
    train_s = trained_before + time.time() - started

    return _finish(model, cfg, cache, work, out, train_s, test)


def _finish(model: torch.nn.Module, cfg: VoiceTrainConfig, cache: Path, work: Path, out: Path | None,
            train_s: float, test: bool, platt: tuple[float, float] | None = None, extra: dict | None = None) -> dict:
    """Calibrate a trained model on the validation speakers (unless `platt` is given), save it, and (unless
    test=False) score the test split."""
    gens = trained_generators(cfg)
    data = build(cache, tested_generators(cfg))  # held-out and unseen ones included, for the test table
    a, b = platt or fit_calibration(model_scorer(model, cfg.frontend), data, gens)
    report = {"config": asdict(cfg), "train_s": round(train_s), "platt": [a, b], **(extra or {})}
    if test:
        report.update(score_test_split(calibrated(model_scorer(model, cfg.frontend), (a, b)), cfg, data))
    if out is not None:
        name = "voice" if cfg.frontend == "linear" else f"voice_{cfg.frontend}"  # voice_wave, voice_phase
        meta = {"name": name, "version": VERSION, "width": cfg.width, "platt": [a, b], "window_s": WINDOW_S,
                "frontend": cfg.frontend, "head": cfg.head, "steps": cfg.steps,
                "generators": [] if cfg.frontend == "phase" else gens}  # PhaseNovelty: real speech only
        save_weights(model, out, meta)
    (work / "report.json").write_text(json.dumps(report, indent=1))
    return report


def _fit_novelty(cfg: VoiceTrainConfig, cache: Path, work: Path, out: Path | None, data: dict[str, Clips],
                 channels: dict[str, Clips], test: bool = True) -> dict:
    """PhaseNovelty: no optimiser, no forgery. Its statistics of real speech come from the scanner's own windows
    (speech segments, 2 s, 1 s apart) over the training speakers' utterances, one group per channel (its
    components): as recorded, through MP3 64k, through Opus 24k, and through the cached random channels, so codecs
    are part of what real speech looks like.

    Its calibration uses no forgery either. A model that has seen no fake cannot know how far out fakes lie, only
    how rarely real speech of a *new* speaker gets this far: p = 0.01 at the median distance of real windows and
    p = 0.5 at their NOVELTY_QUANTILE, both measured on speakers the model was not fitted on (5 folds over the
    training speakers, plus the validation speakers). Calibrated like the others (Platt on the trained
    generators) it would put p = 0.5 in the middle of the overlap with the families it hardly sees, and flag
    half of all real speech; fitted and measured on the same speakers, the tail is underestimated."""
    started = time.time()
    finder = SpeechFinder()

    def windows(clips: Clips, split: str, chans: tuple[str, ...]) -> tuple[torch.Tensor, np.ndarray]:
        stats, speakers = [], []
        for i in clips.subset(split):
            for ch in chans:
                w = scanner_windows(clips.clip(i), ch, finder)
                stats.append(features(w, "phase"))
                speakers += [str(clips.speakers[i])] * len(w)
        return torch.cat(stats), np.array(speakers)

    groups = [windows(data["real"], "train", (ch,)) for ch in CHANNELS]  # one component each
    groups.append(windows(channels["real"], "train", ("clean",)))  # the random channels: calibration only
    folds = [np.array([zlib.crc32(f"fold:{s}".encode()) % 5 for s in speakers]) for _, speakers in groups]
    unseen = []  # distances of real windows from a model fitted without their speaker
    with torch.no_grad():
        for k in range(5):
            model = PhaseNovelty().fit([stats[torch.from_numpy(f != k)] for (stats, _), f in zip(groups[:-1], folds)])
            unseen += [model(stats[torch.from_numpy(f == k)]).numpy() for (stats, _), f in zip(groups, folds)]
        model = PhaseNovelty().fit([stats for stats, _ in groups[:-1]]).eval()
        val = [windows(data["real"], "val", CHANNELS), windows(channels["real"], "val", ("clean",))]
        unseen += [model(stats).numpy() for stats, _ in val]
    d = np.concatenate(unseen)
    mid, high = np.quantile(d, [0.5, NOVELTY_QUANTILE])
    a = float(np.log(99) / (high - mid))
    log.info("phase novelty: %d real training windows; new speakers' distances: median %.3f, q%g %.3f",
             sum(len(stats) for stats, _ in groups), mid, NOVELTY_QUANTILE, high)
    work.mkdir(parents=True, exist_ok=True)
    torch.save({"config": asdict(cfg), "model": model.state_dict(), "step": cfg.steps,
                "train_s": time.time() - started}, work / "checkpoint.pt")
    return _finish(model, cfg, cache, work, out, time.time() - started, test, platt=(a, -a * float(high)),
                   extra={"new_speaker_distances": {"windows": len(d), "median": float(mid),
                                                    f"q{NOVELTY_QUANTILE}": float(high)}})


def trained_generators(cfg: VoiceTrainConfig) -> list[str]:
    return [g for g in GENERATORS if g not in cfg.exclude] + list(cfg.add)  # --exclude takes GENERATORS only


def tested_generators(cfg: VoiceTrainConfig) -> list[str]:
    return [*GENERATORS, *cfg.add, *UNSEEN]


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


def table_of(test: Scores, cfg: VoiceTrainConfig) -> dict:
    """Calibrated utterance log-odds of the test speakers -> per generator EER/AUC (clean, and pooled with MP3/Opus
    copies of both classes), the detection rate and the real-speech false-positive rate at p = 0.5. Generators in
    cfg.exclude are marked held out; UNSEEN ones (never trained on by any recipe) are marked unseen."""
    names = tested_generators(cfg)
    report = {"generators": {}}
    p = lambda zs: sigmoid(np.asarray(zs))  # noqa: E731
    for g in names:
        e, u = _eer_auc(test["real"]["clean"], test[g]["clean"])
        e_all, u_all = _eer_auc([z for v in test["real"].values() for z in v], [z for v in test[g].values() for z in v])
        report["generators"][g] = {"eer": e, "auc": u, "eer_coded": e_all, "auc_coded": u_all,
                                   "tpr_at_0.5": float(np.mean(p(test[g]["clean"]) >= 0.5)),
                                   "held_out": g in cfg.exclude, "unseen": g in UNSEEN}
    trained = trained_generators(cfg)
    if trained:  # in-domain: every generator seen in training, pooled against the same real utterances
        e, u = _eer_auc(test["real"]["clean"], [z for g in trained for z in test[g]["clean"]])
        e_all, u_all = _eer_auc([z for v in test["real"].values() for z in v],
                                [z for g in trained for v in test[g].values() for z in v])
        report["in_domain"] = {"eer": e, "auc": u, "eer_coded": e_all, "auc_coded": u_all}
    report["real_fpr_at_0.5"] = {ch: float(np.mean(p(v) >= 0.5)) for ch, v in test["real"].items()}
    report["counts"] = {"test_real": len(test["real"]["clean"])}
    return report


def assess(weights: list[Path], cache: Path) -> dict[str, dict]:
    """The test tables of committed weights, with the calibration they carry (`train-voice --eval-only`): each model
    alone and, for several files, as the scanner combines them (`calibrated_max`), under the key "combined"."""
    torch.set_num_threads(2)
    loaded = [load_weights(w) for w in weights]
    branches = [Branch.of(m, meta) for m, meta in loaded]
    return _assess_branches(branches, [config_of(meta) for _, meta in loaded], [0] * len(loaded), cache)


def assess_runs(runs: list[Path], cache: Path) -> dict[str, dict]:
    """The same for training runs (their last checkpoint and the calibration in their report), e.g. the filterbank
    model trained without a generator and the phase model: one row of the combination's leave-one-out table."""
    torch.set_num_threads(2)
    branches, cfgs, times = [], [], []
    for run in runs:
        state = torch.load(run / "checkpoint.pt", weights_only=False)
        cfg = VoiceTrainConfig(**{**asdict(VoiceTrainConfig()), **state["config"]})
        model = model_from_state(state["model"], cfg.frontend, cfg.width, cfg.head)
        report = json.loads((run / "report.json").read_text())
        branches.append(Branch(model, cfg.frontend, tuple(report["platt"])))
        cfgs.append(cfg)
        times.append(report["train_s"])
    return _assess_branches(branches, cfgs, times, cache)


def _assess_branches(branches: list[Branch], cfgs: list[VoiceTrainConfig], times: list[float],
                     cache: Path) -> dict[str, dict]:
    trained = {g for c in cfgs for g in trained_generators(c)}
    combined = VoiceTrainConfig(steps=cfgs[0].steps, exclude=[g for g in GENERATORS if g not in trained],
                                add=sorted({g for c in cfgs for g in c.add}),
                                frontend="+".join(c.frontend for c in cfgs))
    data = build(cache, tested_generators(combined))
    views = {c.frontend: (lambda z, i=i: z[i]) for i, c in enumerate(cfgs)}
    if len(branches) > 1:
        views["combined"] = lambda z: z.max(axis=0)  # calibrated_max, as the scanner scores
    test = evaluate_views(lambda w: calibrated_logits(branches, w), views, data, "test", tested_generators(combined),
                          CHANNELS)
    settings = {**{c.frontend: (c, t) for c, t in zip(cfgs, times)}, "combined": (combined, sum(times))}
    return {name: {"config": asdict(settings[name][0]), "train_s": settings[name][1],
                   **table_of(test[name], settings[name][0])} for name in views}


def config_of(meta: dict) -> VoiceTrainConfig:
    """The training settings that matter for scoring, from the metadata of saved weights."""
    return VoiceTrainConfig(steps=meta["steps"], width=meta["width"], frontend=meta.get("frontend", "linear"),
                            head=meta.get("head", "linear"),
                            exclude=[g for g in GENERATORS if g not in meta["generators"]],
                            add=[g for g in meta["generators"] if g in OPTIONAL])


def format_report(report: dict) -> str:
    """The per-generator table of one run, for the terminal and the model card."""
    held = [g for g, r in report["generators"].items() if r["held_out"]]
    trained = f"{report['config']['steps']} steps"
    trained += f", {report['train_s'] / 60:.1f} min" if report["train_s"] else ""
    what = "trained on all generators" if not held else "held out: " + ", ".join(held)
    if report["config"].get("frontend") == "phase":  # PhaseNovelty: no generator is ever trained on
        what = "phase novelty, fitted on real speech only"
        trained = f"{report['train_s'] / 60:.1f} min" if report["train_s"] else "no training steps"
    lines = [f"voice detector, {what} ({trained})",
             f"{'generator':<13} {'EER':>7} {'AUC':>7} {'EER coded':>10} {'TPR@0.5':>8}"]
    for g, r in report["generators"].items():
        mark = "  (held out)" if r["held_out"] else "  (never trained on)" if r.get("unseen") else ""
        lines.append(f"{g:<13} {r['eer']:7.2%} {r['auc']:7.4f} {r['eer_coded']:10.2%} {r['tpr_at_0.5']:8.1%}{mark}")
    if "in_domain" in report:
        r = report["in_domain"]
        lines.append(f"{'in-domain':<13} {r['eer']:7.2%} {r['auc']:7.4f} {r['eer_coded']:10.2%}"
                     "   (trained generators pooled)")
    fpr = report["real_fpr_at_0.5"]
    lines.append("real speech flagged at p>=0.5: " + ", ".join(f"{ch} {v:.1%}" for ch, v in fpr.items())
                 + f"  ({report['counts']['test_real']} held-out utterances)")
    return "\n".join(lines)


def format_logo(reports: list[dict]) -> str:
    """Leave-one-generator-out: each row is a model trained without one generator, tested on that generator."""
    model = reports[0]["config"]["frontend"] if reports else ""  # "linear+wave+phase": combined
    lines = [f"leave-one-generator-out, {model} (train without X, test on X; held-out speakers)",
             f"{'held out':<12} {'EER':>7} {'AUC':>7} {'EER coded':>10} {'TPR@0.5':>8} {'real FPR':>9}"]
    eers, coded = [], []
    for r in reports:
        for g, row in r["generators"].items():
            if row["held_out"]:
                eers.append(row["eer"])
                coded.append(row["eer_coded"])
                lines.append(f"{g:<12} {row['eer']:7.2%} {row['auc']:7.4f} {row['eer_coded']:10.2%} "
                             f"{row['tpr_at_0.5']:8.1%} {r['real_fpr_at_0.5']['clean']:9.1%}")
    if eers:
        lines.append(f"{'mean':<12} {np.mean(eers):7.2%} {'':>7} {np.mean(coded):10.2%}")
    return "\n".join(lines)
