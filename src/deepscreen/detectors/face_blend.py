"""The face-blend detector: BlendNet trained on self-blended images (see synthesis/sbi.py and models/face_blend.md)."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import torch

from ..config import MODELS_DIR, Thresholds
from ..faces.align import CROP_SIZE
from ..faces.regions import REGIONS
from ..verdict import percent
from . import DetectorUnavailable, FaceDetector, FaceLimits, FaceScores, register
from .blendnet import OnnxBlendNet, inference_precision, load_weights, preprocess

WEIGHTS = "face_blend.safetensors"
log = logging.getLogger(__name__)

# Where in the face the boundary map is hottest, in words. Regions are landmark groups mapped into the crop.
_PLACES = {"eye_a": "around an eye", "eye_b": "around an eye", "nose": "around the nose", "mouth": "around the mouth"}


@register
class FaceBlendDetector(FaceDetector):
    name = "face_blend"

    def __init__(self, weights=None):
        path = weights or MODELS_DIR / WEIGHTS
        self.model, self.meta = self._load_weights(path, load_weights, "deepscreen train")
        self.model.for_inference()
        self._onnx: OnnxBlendNet | None = None
        try:
            self.precision = inference_precision()
        except ValueError as err:
            raise DetectorUnavailable(str(err)) from None
        self.limits = FaceLimits(**self.meta.get("face_limits", {}))
        if self.meta["input_size"] != CROP_SIZE:
            raise DetectorUnavailable(f"{path}: trained for {self.meta['input_size']} px crops, scanner uses {CROP_SIZE}")

    @property
    def precision(self) -> str:
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        """The arithmetic of the CNN, and the engine and batch size that suit it (benchmarks/bench_blendnet.py):
        float32 (the default) runs in onnxruntime (the same numbers as torch, 1.8-2x as fast), in batches of 8;
        bfloat16, on request, runs in torch, cheapest per crop in batches of 16 on CPUs with native support.
        Should the graph fail to export, float32 stays in torch and the verdict's `models` entry says so."""
        self._precision = value
        self.batch_size = 16 if value == "bfloat16" else 8
        if value == "float32" and self._onnx is None:
            try:
                self._onnx = OnnxBlendNet(self.model, torch.get_num_threads())
            except Exception as err:  # noqa: BLE001  (any failure here must not cost the detector)
                log.warning("face_blend: onnxruntime unavailable (%s); scoring in torch", err)
        self._runtime = "onnxruntime" if value == "float32" and self._onnx is not None else "torch"

    @property
    def runtime(self) -> str:
        """What runs the CNN: onnxruntime (float32, the default there) or torch. Settable, for comparisons."""
        return self._runtime

    @runtime.setter
    def runtime(self, value: str) -> None:
        if value not in ("torch", "onnxruntime"):
            raise ValueError(f"runtime {value!r}: use torch or onnxruntime")
        if value == "onnxruntime" and (self.precision != "float32" or self._onnx is None):
            raise ValueError("onnxruntime runs this detector in float32 only, and only where it loaded")
        self._runtime = value

    def models(self):
        return [replace(m, precision=self.precision, runtime=self.runtime) for m in super().models()]  # in use now

    def score_faces(self, crops: np.ndarray) -> FaceScores:
        net = self._onnx if self.runtime == "onnxruntime" else self.model
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=self.precision == "bfloat16"):
            logits, maps = net(preprocess(crops))
        return FaceScores(logits.float().numpy().astype(np.float64), torch.sigmoid(maps.float())[:, 0].numpy())

    @staticmethod
    def explain(probability: float, bands: Thresholds = Thresholds(), heatmap: np.ndarray | None = None,
                landmarks_crop: np.ndarray | None = None) -> str:
        where = describe_heat(heatmap, landmarks_crop)
        if probability >= bands.manipulated:
            return f"blending boundary found {where} ({percent(probability)}): the face looks pasted or partly replaced"
        if probability >= bands.suspicious:
            return f"weak signs of blending {where} ({percent(probability)})"
        return f"no blending boundary found ({percent(probability)} manipulated)"


def describe_heat(heatmap: np.ndarray, lms: np.ndarray | None) -> str:
    """Name the facial region whose part of the boundary map is hottest ('along the face outline' by default)."""
    if lms is None or heatmap is None or heatmap.max() < 0.2:
        return "in the face"
    h, w = heatmap.shape
    cell = CROP_SIZE / w
    row, col = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    hot = np.array([(col + 0.5) * cell, (row + 0.5) * cell])
    for region, words in _PLACES.items():
        pts = lms[REGIONS[region]]
        if np.all(hot >= pts.min(0) - cell / 2) and np.all(hot <= pts.max(0) + cell / 2):
            return words
    return "along the face outline"
