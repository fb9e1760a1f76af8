"""Train the voice detector (VoiceNet) on real LibriSpeech and its vocoder copies, split by speaker: one run of
the voice recipe (recipes/voice.toml; the runs of `deepscreen train-voice` are in training/voice_runs.py).

A run is `setup` (data, model, optimiser, resume), `take_step` (a batch of 2 s windows, half real, half from a
random training generator; both classes through the same random channels, codec, noise, band limit, gain, so the
model cannot learn "compressed = real" or "clean = fake"), `validate` (the calibration fitted on the validation
speakers) and `finish` (the weights, and the test table). Resumable: a checkpoint is written every
`checkpoint_every` steps.
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

from ..detectors.voicenet import WINDOW_S, VoiceNet, features, oc_softmax_loss, save_weights
from .recipe import VOICE, record
from .voice_config import VoiceTrainConfig, config_of, tested_generators, trained_generators
from .voice_data import Clips, build, build_channels
from .voice_eval import (CHANNELS, WIN, Scorer, Scores, assess, assess_runs, calibrated, evaluate, evaluate_views,
                         fit_calibration, model_scorer, scanner_windows, score_test_split, table_of)
from .voice_novelty import NOVELTY_QUANTILE, fit_novelty
from .voice_report import format_logo, format_report

# Beside its own: the names other modules import from here, defined in voice_config, _eval, _novelty and _report.
__all__ = ["AUGMENTS", "CHANNELS", "ENSEMBLE", "NOVELTY_QUANTILE", "VERSION", "Scorer", "Scores", "VoiceRun",
           "VoiceTrainConfig", "assess", "assess_runs", "calibrated", "config_of", "evaluate", "evaluate_views",
           "finish", "fit_calibration", "format_logo", "format_report", "load_data", "model_scorer", "random_eq",
           "scanner_windows", "score_test_split", "setup", "table_of", "take_step", "tested_generators", "train",
           "trained_generators", "validate"]

log = logging.getLogger(__name__)
VERSION = VOICE.version
ENSEMBLE = VOICE.ensemble  # the models the scanner combines (`train-voice --ensemble`)
AUGMENTS = ("none", "eq")


def _crop(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(x) <= WIN:
        return np.pad(x, (0, WIN - len(x)))
    start = int(rng.integers(0, len(x) - WIN + 1))
    return x[start:start + WIN]


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


def load_data(cfg: VoiceTrainConfig, cache: Path) -> tuple[dict[str, Clips], dict[str, Clips]]:
    """Everything a run reads, loaded once: the clean clips of every generator it is tested on, and the channel
    copies of those it trains on (made into `cache` first where missing)."""
    data = build(cache, tested_generators(cfg))
    channels = {name: build_channels(cache, name, data[name]) for name in ["real", *trained_generators(cfg)]}
    return data, channels


@dataclass
class VoiceRun:
    """A run in progress: what `setup` made, and what `take_step` moves on."""

    cfg: VoiceTrainConfig
    work: Path
    data: dict[str, Clips]
    channels: dict[str, Clips]
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    loss_fn: Callable
    idx: dict  # (pool, source) -> the training split's clip numbers
    step: int = 0
    trained_before: float = 0.0  # seconds, before a resume
    started: float = field(default_factory=time.time)
    rng: np.random.Generator | None = None

    @property
    def train_s(self) -> float:
        return self.trained_before + time.time() - self.started


def setup(cfg: VoiceTrainConfig, work: Path, data: dict[str, Clips], channels: dict[str, Clips]) -> VoiceRun:
    """The model and optimiser of a run, resumed from WORK/checkpoint.pt where one of the same settings is."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(VOICE.threads)
    channels = {name: channels[name] for name in ["real", *trained_generators(cfg)]}
    idx = {("clean", name): data[name].subset("train") for name in channels}
    idx.update({("channel", name): clips.subset("train") for name, clips in channels.items()})
    model = VoiceNet(cfg.width, cfg.frontend, cfg.head)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.warmup_steps) * 0.5 * (
        1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    loss_fn = oc_softmax_loss if cfg.head == "oc" else torch.nn.BCEWithLogitsLoss()
    run = VoiceRun(cfg, work, data, channels, model, opt, sched, loss_fn, idx)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "checkpoint.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        if {**asdict(VoiceTrainConfig()), **state["config"]} == asdict(cfg):  # settings added later: defaults
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            run.step = state["step"]
            run.trained_before = state.get("train_s", 0.0)
            log.info("resumed at step %d", run.step)
    run.rng = np.random.default_rng(zlib.crc32(f"{cfg.seed}:{run.step}".encode()))
    model.train()
    return run


def take_step(run: VoiceRun) -> float:
    """One optimiser step (a checkpoint every `checkpoint_every` and at the last); returns the loss."""
    cfg = run.cfg
    x, y = _batch(run.data, run.channels, run.idx, trained_generators(cfg), cfg.batch, cfg.p_degrade, run.rng)
    if cfg.augment == "eq":
        x = random_eq(x, run.rng)
    loss = run.loss_fn(run.model(features(x, cfg.frontend)), torch.from_numpy(y))
    run.opt.zero_grad()
    loss.backward()
    run.opt.step()
    run.sched.step()
    run.step += 1
    if run.step % VOICE.checkpoint_every == 0 or run.step == cfg.steps:
        torch.save({"config": asdict(cfg), "model": run.model.state_dict(), "opt": run.opt.state_dict(),
                    "sched": run.sched.state_dict(), "step": run.step, "train_s": run.train_s},
                   run.work / "checkpoint.pt")
    return loss.item()


def validate(run: VoiceRun) -> tuple[float, float]:
    """The calibration (Platt) fitted on the validation speakers, every trained generator, clean and coded."""
    run.model.eval()
    return fit_calibration(model_scorer(run.model, run.cfg.frontend), run.data, trained_generators(run.cfg))


def finish(model: torch.nn.Module, cfg: VoiceTrainConfig, work: Path, out: Path | None, data: dict[str, Clips],
           train_s: float, platt: tuple[float, float], test: bool = True, extra: dict | None = None) -> dict:
    """Save a calibrated model to `out` (if given), score the test split (unless test=False) and write the report."""
    a, b = platt
    report = {"config": asdict(cfg), "train_s": round(train_s), "platt": [a, b], **(extra or {})}
    if test:
        report.update(score_test_split(calibrated(model_scorer(model, cfg.frontend), (a, b)), cfg, data))
    if out is not None:
        name = "voice" if cfg.frontend == "linear" else f"voice_{cfg.frontend}"  # voice_wave, voice_phase
        meta = {"name": name, "version": VOICE.version, "width": cfg.width, "platt": [a, b], "window_s": WINDOW_S,
                "frontend": cfg.frontend, "head": cfg.head, "steps": cfg.steps,
                "generators": [] if cfg.frontend == "phase" else trained_generators(cfg),  # phase: real speech only
                "recipe": record(cfg.recipe())}
        save_weights(model, out, meta)
    (work / "report.json").write_text(json.dumps(report, indent=1))
    return report


def train(cfg: VoiceTrainConfig, cache: Path, work: Path, out: Path | None = None, progress=None,
          test: bool = True, data: dict[str, Clips] | None = None, channels: dict[str, Clips] | None = None) -> dict:
    """Train (or resume) one model, fit its calibration, save it to `out` if given. `data` and `channels`: what
    `load_data` gives, when the caller has it already (several runs share one load). `test=False` skips the test
    table (the caller scores several models in one pass, `assess_runs`)."""
    if data is None or channels is None:
        data, channels = load_data(cfg, cache)
    if cfg.frontend == "phase":
        started = time.time()
        model, platt, measured = fit_novelty(cfg, work, data, channels)
        return finish(model, cfg, work, out, data, time.time() - started, platt, test, measured)
    run = setup(cfg, work, data, channels)
    while run.step < cfg.steps:
        loss = take_step(run)
        if progress:
            progress(run.step, cfg.steps, loss)
    train_s = run.train_s
    return finish(run.model, cfg, work, out, data, train_s, validate(run), test)
