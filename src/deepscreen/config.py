"""Settings of one scan. Defaults are safe for an internet-facing service; the CLI exposes the ones people change."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = Path(os.environ.get("DEEPSCREEN_MODELS", PROJECT_ROOT / "models"))
# Data beside the project (see README): overridable so a deployment can point elsewhere.
SHARED_DIR = Path(os.environ.get("DEEPSCREEN_SHARED", PROJECT_ROOT.parent / "shared"))


@dataclass(frozen=True)
class Limits:
    """Refuse work before it starts rather than run out of memory or time on hostile input."""

    max_file_bytes: int = 2 * 1024**3  # 2 GiB
    max_image_pixels: int = 50_000_000  # ~7000x7000; larger is almost always a decompression bomb
    max_frame_pixels: int = 4096 * 2304  # 4K UHD video frames
    max_duration_s: float = 3 * 3600.0  # three hours of video or audio
    max_frames_decoded: int = 200_000  # bounds --all-frames work
    max_audio_samples: int = 16_000 * 3 * 3600  # three hours at 16 kHz, after resampling


@dataclass(frozen=True)
class Sampling:
    """Which video frames are analysed: `frames` spread evenly, at most `max_fps` per second of video."""

    frames: int = 16
    max_fps: float = 4.0
    all_frames: bool = False  # forensic mode: every decoded frame (still bounded by Limits.max_frames_decoded)
    # Run the face detector on every n-th analysed frame; in between, the landmark model follows the faces of
    # the frame before (a lost face triggers a detection at once). 1 = detect on every frame.
    redetect_every: int = 4

    def __post_init__(self):
        if self.redetect_every < 1:
            raise ValueError("Sampling.redetect_every must be at least 1 (1 = detect faces on every frame)")


@dataclass(frozen=True)
class Thresholds:
    """Calibrated-probability bands (documented in docs/verdicts.md).

    `manipulated` at p >= 0.5 is the Bayes decision for calibrated scores under equal costs; the `suspicious`
    band below it sends borderline files to a reviewer instead of letting them pass silently.
    """

    suspicious: float = 0.25
    manipulated: float = 0.5

    def __post_init__(self):
        if not 0.0 < self.suspicious <= self.manipulated <= 1.0:
            raise ValueError(f"bands must satisfy 0 < suspicious ({self.suspicious:g}) <= manipulated "
                             f"({self.manipulated:g}) <= 1")

    def label(self, p: float | None) -> str:
        if p is None:
            return "inconclusive"
        if p >= self.manipulated:
            return "manipulated"
        if p >= self.suspicious:
            return "suspicious"
        return "authentic"


@dataclass(frozen=True)
class ScanConfig:
    limits: Limits = field(default_factory=Limits)
    sampling: Sampling = field(default_factory=Sampling)
    thresholds: Thresholds = field(default_factory=Thresholds)
    max_faces: int = 8  # per frame; the largest faces are kept
    keep_crops: bool = True  # keep peak crops + heat maps on the Verdict for the HTML report
