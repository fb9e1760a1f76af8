"""VoiceNet: a small residual CNN on the log power spectrum of 2-second windows (10 ms frames).

Front ends (numbers in models/voice.md):
- linear (shipped): 80 linear-frequency filterbank bands, the LFCC front end without its DCT. Linear, not mel,
  because vocoder artefacts sit in the 4-8 kHz band that a mel scale squeezes together (Sahidullah et al. 2015;
  the LFCC baselines of ASVspoof 2019/2021).
- spec: the 256 STFT bins themselves, which resolve a voice's harmonics. Better on the vocoders it was trained on
  (EER under MP3/Opus 1.1 % vs 5.2 %), worse on families it never saw (leave-one-out), so not shipped.
- mel: 80 mel bands, the ablation that shows why not mel.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

RATE = 16_000
WINDOW_S = 2.0
N_FFT, HOP, BANDS = 512, 160, 80


@lru_cache(maxsize=1)
def _linear_filters() -> torch.Tensor:
    """80 triangular filters spaced evenly from 0 to 8 kHz."""
    bins = np.linspace(0, RATE / 2, N_FFT // 2 + 1)
    edges = np.linspace(0, RATE / 2, BANDS + 2)
    lower = (bins[None] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    upper = (edges[2:, None] - bins[None]) / (edges[2:] - edges[1:-1])[:, None]
    return torch.from_numpy(np.maximum(0, np.minimum(lower, upper)).astype(np.float32))


@lru_cache(maxsize=1)
def _mel_filters() -> torch.Tensor:
    """80 mel filters (the ablation in models/voice.md: linear spacing is the default because it wins)."""
    from ..synthesis.voice import mel_filters

    return torch.from_numpy(mel_filters(RATE, N_FFT, BANDS))


FRONTENDS = ("linear", "mel", "spec")


def features(windows: torch.Tensor | np.ndarray, frontend: str = "linear") -> torch.Tensor:
    """(B, samples) 16 kHz float -> (B, 1, bands, frames) log energies, loudness removed.

    linear / mel: 80 filterbank bands. spec: the 256 STFT bins themselves (31 Hz apart), which resolve the
    harmonics of a voice; filterbanks 100 Hz wide average them away, and the harmonic fine structure above 4 kHz is
    exactly what mel-driven vocoders (Griffin-Lim, LPC) fail to rebuild (models/voice.md, "front end").
    Subtracting each window's mean log energy makes the input independent of gain (a quiet recording is not a
    different voice) while keeping the spectral shape and its fine structure."""
    if frontend not in FRONTENDS:
        raise ValueError(f"unknown voice front end {frontend!r}; known: {', '.join(FRONTENDS)}")
    x = torch.as_tensor(windows, dtype=torch.float32)
    spec = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True).abs().pow(2)
    if frontend == "spec":
        fb = torch.log(spec[:, :N_FFT // 2] + 1e-8)  # drop the Nyquist bin: 256 bins
    else:
        bank = _linear_filters() if frontend == "linear" else _mel_filters()
        fb = torch.log(torch.einsum("fk,bkt->bft", bank, spec) + 1e-8)
    return (fb - fb.mean(dim=(1, 2), keepdim=True)).unsqueeze(1)


def score_windows(model: "VoiceNet", windows: np.ndarray, frontend: str = "linear", chunk: int = 32) -> np.ndarray:
    """Raw logits of (N, samples) windows, `chunk` at a time (bounded memory on long recordings)."""
    out = []
    with torch.inference_mode():
        for s in range(0, len(windows), chunk):
            out.append(model(features(windows[s:s + chunk], frontend)).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = nn.Identity() if cin == cout and stride == 1 else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.body(x) + self.skip(x))


class VoiceNet(nn.Module):
    """~0.1 M parameters: a strided stem, 4 residual stages, then mean+max pooling over frequency and time.
    Sized for CPU training: a step on 32 windows takes a fraction of a second on 2 cores."""

    def __init__(self, width: int = 16, frontend: str = "linear"):
        super().__init__()
        w = width
        self.input_norm = nn.BatchNorm2d(1)
        # On the 256-bin spectrogram a tall stem kernel sees a few harmonics (9 bins = 280 Hz) before striding
        # frequency by 4, so the stages after it run on a grid (64 x 100) close to the filterbank's (40 x 100).
        conv = (nn.Conv2d(1, w, (9, 3), (4, 2), (4, 1), bias=False) if frontend == "spec"
                else nn.Conv2d(1, w, 3, 2, 1, bias=False))
        self.stem = nn.Sequential(conv, nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        self.stages = nn.Sequential(_Block(w, w, 1), _Block(w, 2 * w, 2), _Block(2 * w, 3 * w, 2),
                                    _Block(3 * w, 4 * w, 2))
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(8 * w, 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.stem(self.input_norm(feats)))
        pooled = torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)
        return self.head(pooled).squeeze(1)


def save_weights(model: VoiceNet, path: Path, meta: dict) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}  # 0.8 MB in float32: keep it exact
    save_file(state, str(path), metadata={"deepscreen": json.dumps(meta)})


def load_weights(path: Path) -> tuple[VoiceNet, dict]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["deepscreen"])
    model = VoiceNet(width=meta.get("width", 16), frontend=meta.get("frontend", "linear"))
    model.load_state_dict(load_file(str(path)))
    return model.eval(), meta
