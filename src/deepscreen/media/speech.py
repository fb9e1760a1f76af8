"""Where people speak: silero-vad (its ONNX model ships inside the `silero-vad` wheel) run with onnxruntime.

The voice detector only scores speech; music, noise and silence are out of its scope and it abstains on them.
The model is driven directly through onnxruntime (32 ms steps of 512 samples at 16 kHz, 64 samples of context),
which avoids importing torch for the VAD and is 4x faster than the package's TorchScript path
(../shared/MODELS.md).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE

STEP = 512  # samples per VAD decision at 16 kHz (32 ms)
_CONTEXT = 64


@dataclass(frozen=True)
class SpeechSegment:
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def _model_path() -> Path:
    # find_spec of the top-level package only: importing silero_vad (or its .data) would import torch.
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("silero-vad is not installed (pip install silero-vad)")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.onnx"


class SpeechFinder:
    """Speech probabilities and segments. One per process (the ONNX session is reused); thread-safe."""

    def __init__(self, on: float = 0.5, off: float = 0.35, min_speech_s: float = 0.25, min_gap_s: float = 0.3,
                 pad_s: float = 0.05):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # tiny model, one step at a time: threads only add overhead
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(_model_path()), opts, providers=["CPUExecutionProvider"])
        self.on, self.off = on, off
        self.min_speech_s, self.min_gap_s, self.pad_s = min_speech_s, min_gap_s, pad_s
        self._lock = threading.Lock()

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """One speech probability per 32 ms step of 16 kHz mono float32 audio."""
        return self.stream_probabilities([samples])[0]

    def stream_probabilities(self, blocks: Iterable[np.ndarray]) -> tuple[np.ndarray, int]:
        """The same for audio that arrives in blocks of any length (media.audio.AudioReader.blocks): the model's
        state runs on across blocks, so the result equals that of the blocks joined. Also the samples seen."""
        out: list[np.ndarray] = []
        state = np.zeros((2, 1, 128), np.float32)
        context = np.zeros((1, _CONTEXT), np.float32)
        sr = np.array(SAMPLE_RATE, np.int64)
        rest = np.zeros(0, np.float32)  # the samples of a step cut by the end of a block
        seen = 0
        with self._lock:
            for block in blocks:
                seen += len(block)
                x = np.concatenate([rest, block]) if len(rest) else block
                n = len(x) // STEP
                probs = np.zeros(n, np.float32)
                for i in range(n):
                    step = np.concatenate([context, x[None, i * STEP:(i + 1) * STEP]], axis=1)
                    p, state = self._session.run(None, {"input": step, "state": state, "sr": sr})
                    context = step[:, -_CONTEXT:]
                    probs[i] = p[0, 0]
                out.append(probs)
                rest = x[n * STEP:]
        return (np.concatenate(out) if out else np.zeros(0, np.float32)), seen

    def segments(self, probs: np.ndarray) -> list[SpeechSegment]:
        """Hysteresis (start above `on`, end below `off`), then short gaps closed and short bursts dropped."""
        step = STEP / SAMPLE_RATE
        raw, start = [], None
        for i, p in enumerate(probs):
            if start is None and p >= self.on:
                start = i
            elif start is not None and p < self.off:
                raw.append([start * step, i * step])
                start = None
        if start is not None:
            raw.append([start * step, len(probs) * step])
        merged: list[list[float]] = []
        for seg in raw:
            if merged and seg[0] - merged[-1][1] < self.min_gap_s:
                merged[-1][1] = seg[1]
            else:
                merged.append(seg)
        end = len(probs) * step
        return [SpeechSegment(max(0.0, a - self.pad_s), min(end, b + self.pad_s))
                for a, b in merged if b - a >= self.min_speech_s]

    def __call__(self, samples: np.ndarray) -> tuple[np.ndarray, list[SpeechSegment]]:
        probs = self.probabilities(samples)
        return probs, self.segments(probs)
