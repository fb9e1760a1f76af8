"""Small numeric helpers the scanner's detectors share with the lab (which imports them from here, never the
other way round)."""

from __future__ import annotations

import numpy as np


def sigmoid(z):
    """Logistic function without overflow warnings for very confident logits (|z| > 700)."""
    return 1 / (1 + np.exp(-np.clip(np.asarray(z, float), -500, 500)))


def mel_filters(rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters, Slaney mel scale and area normalisation (the convention HiFi-GAN was trained with)."""
    fmax = fmax or rate / 2
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0

    def to_mel(f):
        f = np.asarray(f, np.float64)
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)

    def to_hz(m):
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    edges = to_hz(np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2))
    bins = np.linspace(0, rate / 2, n_fft // 2 + 1)
    lower = (bins[None] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    upper = (edges[2:, None] - bins[None]) / (edges[2:] - edges[1:-1])[:, None]
    fb = np.maximum(0, np.minimum(lower, upper)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return fb.astype(np.float32)
