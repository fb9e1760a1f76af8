"""The fine-tuning lab's stored features must be what the scanner's voice front end computes."""

import numpy as np
import torch

from deepscreen.detectors.voicenet import features
from deepscreen.training.voice_finetune import WINDOW_FRAMES, encode, log_frames, window_features


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum(np.sin(k * phase) / k for k in range(1, 30)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (0.1 * x + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def test_window_from_stored_frames_matches_the_scanner_front_end():
    x = _speechlike(5.0)
    codes = encode(log_frames(x))
    start = 120  # frames: the window of samples 1.2 s .. 3.2 s
    stored = window_features(codes, np.array([start]))
    direct = features(x[None, start * 160:start * 160 + 32000])
    assert stored.shape == direct.shape == (1, 1, 80, WINDOW_FRAMES)
    inner = (slice(None), slice(None), slice(None), slice(3, -3))  # the centred STFT pads a window's edges
    err = (stored - direct)[inner].abs()
    assert float(err.max()) < 0.1  # the 8-bit codes are 0.15 nats apart
    assert float(err.mean()) < 0.05


def test_a_clip_shorter_than_a_window_is_padded_not_dropped():
    codes = encode(log_frames(_speechlike(1.0)))
    assert len(codes) < WINDOW_FRAMES
    out = window_features(codes, np.array([0]))
    assert out.shape == (1, 1, 80, WINDOW_FRAMES) and torch.isfinite(out).all()
