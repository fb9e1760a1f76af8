"""Detector registry, and the one interface detectors answer through.

A detector declares what it looks at (`modality`): aligned face crops ("face"), 16 kHz speech ("voice"), the
file's own declarations ("provenance"). Face and voice detectors return a `DetectorResult`: a raw score per unit
(a face crop, a 2 s speech window), maps of where the evidence is, the `Calibration` that turns a score into a
probability and the words for a probability, or an abstention with its reason. Turning results into a verdict
(calibrating, combining, explaining with the bands in force, labelling) is fusion.build_verdict's alone.

Adding a detector: a module with a class decorated by `@register`, and the module's name in `MODULES`; it is then
loaded by name (`Scanner(detectors=[...])`, DEFAULT_DETECTORS).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..verdict import ModelInfo, percent
from .dsp import sigmoid

REGISTRY: dict[str, type["Detector"]] = {}
DEFAULT_DETECTORS = ("face_blend", "voice", "provenance")
# Imported on the first load_detector: their classes register. "generated" (modality "image") is loaded only by
# name: fusion.build_verdict does not use image results yet (models/generated.md).
MODULES = ("face_blend", "voice", "provenance", "generated")


def register(cls: type["Detector"]) -> type["Detector"]:
    REGISTRY[cls.name] = cls
    return cls


class DetectorUnavailable(RuntimeError):
    """The detector cannot run here (e.g. its weights are missing); the message says how to fix it."""


@dataclass(frozen=True)
class Calibration:
    """Platt scaling fitted on held-out data: p = sigmoid(slope * score + intercept). Applied to one unit's score
    or to an aggregate of several (a face track, a recording)."""

    slope: float = 1.0
    intercept: float = 0.0

    def __call__(self, score: float) -> float:
        return float(sigmoid(self.slope * score + self.intercept))


@dataclass(frozen=True)
class FaceLimits:
    """Faces a detector cannot judge at its measured rate: narrower than `min_width` px (the face box) or with less
    detail than `min_sharpness` (variance of the Laplacian of the aligned grey crop). Measured per model on
    held-out pairs and written into its weights; `note` says what was measured. 0 judges every face."""

    min_width: float = 0.0
    min_sharpness: float = 0.0
    note: str = ""


@dataclass
class DetectorResult:
    """What one detector found in one file, before any verdict is made of it."""

    detector: str
    version: str
    calibration: Calibration
    scores: np.ndarray  # (units,) raw scores (log-odds), higher = more likely manipulated; units in input order
    maps: np.ndarray | None = None  # (units, h, w) 0..1: where in each unit the evidence is (face heat maps)
    spans_s: np.ndarray | None = None  # (units, 2) start and end of each unit in seconds (voice windows)
    cues: list[str] = field(default_factory=list)  # what the suspicious units were flagged for, in words
    abstained: str | None = None  # why nothing was scored (no speech, too little of it); scores are then empty
    limits: FaceLimits = FaceLimits()  # face units the detector cannot judge
    # The detector's words for a probability under the bands in force: explain(probability, bands, **context).
    explain: Callable[..., str] | None = field(default=None, repr=False)
    models: list[ModelInfo] = field(default_factory=list)  # the weights that made the scores

    def probability(self, score: float) -> float:
        return self.calibration(score)


class Detector(ABC):
    name: ClassVar[str]
    version: ClassVar[str]
    modality: ClassVar[str]  # "face" (aligned face crops), "voice" (16 kHz speech), "provenance" (the file's own claims)
    _info: ModelInfo | None = None
    calibration = Calibration()

    def _load_weights(self, path, loader, make_command: str):
        """(model, meta) from a weights file, with its Platt calibration and hash kept for `models()`; a missing
        file says which command makes it."""
        from ..media.io import file_sha256

        if not path.exists():
            raise DetectorUnavailable(f"{path}: {self.name} weights missing; run `{make_command}` to make them")
        model, meta = loader(path)
        self.calibration = Calibration(*meta["platt"])
        self._info = ModelInfo(meta["name"], meta["version"], file_sha256(path))
        self.version = meta["version"]  # the weights', so evidence never names a recipe that is not loaded
        return model, meta

    def models(self) -> list[ModelInfo]:
        return [self._info] if self._info else []

    def calibrate(self, score: float) -> float:
        """A raw score (or an aggregate of several) as a calibrated probability (for the lab and tests; the
        scan core applies the Calibration carried by the result)."""
        return self.calibration(score)

    def result(self, scores: np.ndarray, **found) -> DetectorResult:
        """This detector's result for one file: its name, version, calibration, words and weights, and `found`."""
        return DetectorResult(self.name, self.version, self.calibration, np.asarray(scores, np.float64),
                              explain=self.explain, models=self.models(), **found)

    @staticmethod
    def explain(probability: float, bands, **context) -> str:
        """The finding in words for a probability, under `bands` (config.Thresholds); no calibration here."""
        return f"scored {percent(probability)}"


@dataclass
class FaceScores:
    logits: np.ndarray  # (N,) raw scores, higher = more likely manipulated
    heatmaps: np.ndarray  # (N, h, w) 0..1, where the evidence is inside each crop


class FaceDetector(Detector):
    modality = "face"
    batch_size = 16  # crops per `score_faces` call (the scan core scores a file's crops in batches of this many)
    limits = FaceLimits()

    @abstractmethod
    def score_faces(self, crops: np.ndarray) -> FaceScores:
        """crops: (N, S, S, 3) uint8 RGB faces aligned by `faces.align`."""

    def score_mirrored(self, crops: np.ndarray) -> FaceScores:
        """Each face scored as itself and as its mirror image, logits and maps averaged (flip test-time
        augmentation). For still photos, which give one look at each face (+0.002 AUC on held-out self-blends,
        models/face_blend.md); a video's face track already averages many frames, so videos skip it."""
        n = len(crops)
        both = self.score_faces(np.concatenate([crops, crops[:, :, ::-1]]))
        return FaceScores((both.logits[:n] + both.logits[n:]) / 2, (both.heatmaps[:n] + both.heatmaps[n:, :, ::-1]) / 2)

    def judge(self, crops: np.ndarray, mirror: bool = False) -> DetectorResult:
        """Raw scores and heat maps of a file's aligned crops, `batch_size` at a time (mirrored for a photo:
        `score_mirrored`)."""
        score = self.score_mirrored if mirror else self.score_faces
        parts = [score(crops[i:i + self.batch_size]) for i in range(0, len(crops), self.batch_size)]
        if not parts:
            return self.result(np.zeros(0), maps=np.zeros((0, 1, 1)), limits=self.limits, abstained="no face found")
        return self.result(np.concatenate([p.logits for p in parts]),
                           maps=np.concatenate([p.heatmaps for p in parts]), limits=self.limits)

    @staticmethod
    def explain(probability: float, bands, heatmap: np.ndarray | None = None,
                landmarks_crop: np.ndarray | None = None) -> str:
        return f"scored {percent(probability)}"


def load_detector(name: str) -> Detector:
    import importlib

    for module in MODULES:  # each registers its detectors when imported
        importlib.import_module(f"{__name__}.{module}")
    if name not in REGISTRY:
        raise DetectorUnavailable(f"unknown detector {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]()
