"""Phase novelty (PhaseNovelty): a voice model fitted on real speech alone, with no optimiser and no forgery."""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..detectors.voicenet import PhaseNovelty, features
from ..media.speech import SpeechFinder
from .recipe import VOICE
from .voice_config import VoiceTrainConfig
from .voice_data import Clips
from .voice_eval import CHANNELS, scanner_windows

log = logging.getLogger(__name__)
NOVELTY_QUANTILE = VOICE.novelty_quantile  # p = 0.5 this far out in new speakers' real speech


def fit_novelty(cfg: VoiceTrainConfig, work: Path, data: dict[str, Clips],
                channels: dict[str, Clips]) -> tuple[PhaseNovelty, tuple[float, float], dict]:
    """The model, its calibration and what the calibration was measured on.

    Its statistics of real speech come from the scanner's own windows (speech segments, 2 s, 1 s apart) over the
    training speakers' utterances, one group per channel (its components): as recorded, through MP3 64k, through
    Opus 24k, and through the cached random channels, so codecs are part of what real speech looks like.

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
    measured = {"new_speaker_distances": {"windows": len(d), "median": float(mid), f"q{NOVELTY_QUANTILE}": float(high)}}
    return model, (a, -a * float(high)), measured
