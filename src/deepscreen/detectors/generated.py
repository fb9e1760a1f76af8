"""Generated-image detector (issue #37 part 2): does the fine texture of a picture look made by a generator?

Generators up-sample (transposed convolution, nearest-neighbour + convolution, learned super-resolution), and
up-sampling leaves traces that cameras and classical resizing do not (Zhang et al., WIFS 2019, "AutoGAN"; Durall
et al., CVPR 2020; Frank et al., ICML 2020). This detector looks only at those traces, on the luminance at the
picture's own resolution: up to K patches of 64 px where the picture has the most texture, each scored by a small
CNN plus the patch's azimuthally averaged power spectrum (detectors/generated_net.py), the picture's logit the mean
of its patches', Platt-calibrated to P(generated).

It needs no face: whole pictures are scored; a face region (a box in the picture) is scored the same way at the
picture's resolution (aligned face crops are resampled, which blurs the traces, so boxes are preferred). Pictures
under 64 px on their short side are not judged (None). Weights: models/generated.safetensors; what it was trained
on, held-out numbers and limits: models/generated.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import MODELS_DIR, Thresholds
from ..verdict import percent
from . import Detector, DetectorResult, register
from .generated_net import PATCH, check_rgb, load_weights, select_patches

WEIGHTS = "generated.safetensors"


@dataclass
class ImageScore:
    logit: float  # mean patch logit
    probability: float  # calibrated P(generated)
    patch_logits: np.ndarray  # (n,)
    patch_boxes: np.ndarray  # (n, 4) x0, y0, x1, y1 in the picture


@register
class GeneratedImageDetector(Detector):
    """Whole-picture detector: `score_image(rgb)`; `score_region(rgb, box)` for a face box. None = not judged."""

    name = "generated"
    version = "1"
    modality = "image"

    def __init__(self, weights=None):
        path = Path(weights) if weights else MODELS_DIR / WEIGHTS
        self.model, self.meta = self._load_weights(
            path, load_weights, "python -m deepscreen.training.generated_train score (the recipe: models/generated.md)")
        self.k = int(self.meta["arch"]["k"])

    def patch_logits(self, patches: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(patches)).numpy().astype(np.float64)

    def score_image(self, rgb: np.ndarray) -> ImageScore | None:
        """Score a whole RGB uint8 picture at its own resolution; None when it is under 64 px on a side."""
        patches, pos = select_patches(rgb, self.k)
        if not len(patches):
            return None
        z = self.patch_logits(patches)
        boxes = np.hstack([pos[:, ::-1], pos[:, ::-1] + PATCH])
        logit = float(z.mean())
        return ImageScore(logit, self.calibrate(logit), z, boxes)

    def score_region(self, rgb: np.ndarray, box, margin: float = 0.15) -> ImageScore | None:
        """Score a region (x0, y0, x1, y1), e.g. a face box, grown by `margin` of its size, at the picture's own
        resolution. Patch boxes are in the picture's coordinates."""
        check_rgb(rgb)
        h, w = rgb.shape[:2]
        x0, y0, x1, y1 = (float(v) for v in box)
        gx, gy = (x1 - x0) * margin, (y1 - y0) * margin
        x0, y0 = max(0, int(x0 - gx)), max(0, int(y0 - gy))
        x1, y1 = min(w, int(np.ceil(x1 + gx))), min(h, int(np.ceil(y1 + gy)))
        if x1 - x0 < PATCH or y1 - y0 < PATCH:
            return None
        s = self.score_image(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
        if s is not None:
            s.patch_boxes = s.patch_boxes + np.array([x0, y0, x0, y0])
        return s

    def judge(self, rgb: np.ndarray) -> DetectorResult:
        """The detector's result for one picture (or one decoded video frame): one unit, the whole picture, whose
        score is the mean patch logit; an abstention when the picture is too small to judge."""
        s = self.score_image(rgb)
        if s is None:
            return self.result(np.zeros(0), abstained=f"the picture is under {PATCH} px on a side: too small to "
                                                      "judge its fine texture")
        return self.result(np.array([s.logit]))

    @staticmethod
    def explain(probability: float | None, bands: Thresholds = Thresholds(), **context) -> str:
        if probability is None:
            return f"too small to judge its fine texture (under {PATCH} px)"
        if probability >= bands.manipulated:
            return (f"the fine texture of the picture looks up-sampled by a generator ({percent(probability)}): "
                    "made or re-drawn by an AI model")
        if probability >= bands.suspicious:
            return f"weak signs of generator up-sampling in the fine texture ({percent(probability)})"
        return f"no generator texture found ({percent(probability)} generated)"
