"""Detector registry. A detector declares what it looks at (`modality`) and returns scores or abstains.

Adding a detector = one module with a class decorated by `@register`; the scan core finds it by name.
Face detectors take aligned face crops; later kinds (whole image, audio) get their own `modality`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..verdict import ModelInfo, percent

REGISTRY: dict[str, type["Detector"]] = {}
DEFAULT_DETECTORS = ("face_blend", "voice", "provenance")


def register(cls: type["Detector"]) -> type["Detector"]:
    REGISTRY[cls.name] = cls
    return cls


class DetectorUnavailable(RuntimeError):
    """The detector cannot run here (e.g. its weights are missing); the message says how to fix it."""


@dataclass
class FaceScores:
    logits: np.ndarray  # (N,) raw scores, higher = more likely manipulated
    probabilities: np.ndarray  # (N,) calibrated P(manipulated)
    heatmaps: np.ndarray  # (N, h, w) 0..1, where the evidence is inside each crop


class Detector(ABC):
    name: ClassVar[str]
    version: ClassVar[str]
    modality: ClassVar[str]  # "face" (aligned face crops), "voice" (16 kHz speech), "provenance" (the file's own claims)
    _info: ModelInfo | None = None
    a, b = 1.0, 0.0  # Platt calibration: p = sigmoid(a * logit + b)

    def _load_weights(self, path, loader, make_command: str):
        """(model, meta) from a weights file, with its Platt calibration and hash kept for `models()`; a missing
        file says which command makes it."""
        from ..media.sniff import file_sha256

        if not path.exists():
            raise DetectorUnavailable(f"{path}: {self.name} weights missing; run `{make_command}` to make them")
        model, meta = loader(path)
        self.a, self.b = meta["platt"]
        self._info = ModelInfo(meta["name"], meta["version"], file_sha256(path))
        self.version = meta["version"]  # the weights', so evidence never names a recipe that is not loaded
        return model, meta

    def models(self) -> list[ModelInfo]:
        return [self._info] if self._info else []

    def calibrate(self, logit: float) -> float:
        """Map a raw score (or an aggregate of several) to a calibrated probability."""
        from .dsp import sigmoid

        return float(sigmoid(self.a * logit + self.b))


@dataclass(frozen=True)
class FaceLimits:
    """Faces a detector cannot judge at its measured rate: narrower than `min_width` px (the face box) or with less
    detail than `min_sharpness` (variance of the Laplacian of the aligned grey crop). Measured per model on
    held-out pairs and written into its weights; `note` says what was measured. 0 judges every face."""

    min_width: float = 0.0
    min_sharpness: float = 0.0
    note: str = ""


class FaceDetector(Detector):
    modality = "face"
    batch_size = 16  # crops per `score_faces` call in a video scan (the scan core batches them across frames)
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
        logits = (both.logits[:n] + both.logits[n:]) / 2
        heat = (both.heatmaps[:n] + both.heatmaps[n:, :, ::-1]) / 2
        return FaceScores(logits, np.array([self.calibrate(z) for z in logits]), heat)

    def explain(self, probability: float, heatmap: np.ndarray, landmarks_crop: np.ndarray | None,
                bands=None) -> str:
        return f"{self.name} scored {percent(probability)}"


def load_detector(name: str) -> Detector:
    from . import face_blend, provenance, voice  # noqa: F401  (they register themselves)

    if name not in REGISTRY:
        raise DetectorUnavailable(f"unknown detector {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]()
