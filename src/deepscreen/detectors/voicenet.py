"""VoiceNet: a small residual CNN on the log power spectrum of 2-second windows (10 ms frames), and its front ends.

`linear` (shipped): 80 linear-frequency bands, not mel, because vocoder artefacts sit at 4-8 kHz, which a mel scale
squeezes together. `phase` (shipped beside it): no network, the phase statistics of `PhaseNovelty`, a one-class model
of real speech. `spec`, `linear_if`, `mel` and `wave` are kept for the ablations of models/voice.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
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
    from .dsp import mel_filters

    return torch.from_numpy(mel_filters(RATE, N_FFT, BANDS))


FRONTENDS = ("linear", "mel", "spec", "linear_if", "wave", "phase")
HEADS = ("linear", "oc")
OC_DIM, OC_SCALE = 32, 20.0


def channels_of(frontend: str) -> int:
    return 2 if frontend == "linear_if" else 1


def _if_wander(stft: torch.Tensor, power: torch.Tensor) -> torch.Tensor:
    """(B, bins, frames) complex STFT -> (B, bands, frames): per band, the magnitude-weighted frame-to-frame change
    of the instantaneous frequency (in bins). A steady harmonic keeps its frequency (change near 0); noise, whose
    phase is random from frame to frame, wanders by about 0.65 bins."""
    k = torch.arange(stft.shape[1], dtype=torch.float32)[None, :, None]
    advance = torch.angle(stft[..., 1:]) - torch.angle(stft[..., :-1]) - 2 * math.pi * k * HOP / N_FFT
    deviation = torch.remainder(advance + math.pi, 2 * math.pi) - math.pi  # principal value
    wander = (deviation[..., 1:] - deviation[..., :-1]).abs() * (N_FFT / (2 * math.pi * HOP))
    wander = torch.nn.functional.pad(wander, (2, 0), mode="replicate")  # per window: no batch-dependent fill
    weight = power.sqrt()
    bank = _linear_filters()
    return (torch.einsum("fk,bkt->bft", bank, weight * wander)
            / (torch.einsum("fk,bkt->bft", bank, weight) + 1e-6))


PHASE_FFT, PHASE_HOP = 512, 128  # 8 ms hop: phase still predictable from one frame to the next
PHASE_BANDS = ((0, 2000), (2000, 4000), (4000, 6000), (6000, 8000))
PHASE_STATS = 4 * len(PHASE_BANDS)


def _wrap(angle: torch.Tensor) -> torch.Tensor:
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def phase_stats(windows: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(B, samples) -> (B, 16): per 2 kHz band, over the louder half of the frames, how the phase moves at
    spectral peaks (the harmonics of a voice) and how peaked the spectrum is:

    - the frame-to-frame change of the instantaneous frequency at peaks, mean and median (radians per hop): a
      recorded harmonic glides smoothly; phase rebuilt from a magnitude (Griffin-Lim, phase vocoders) or drawn by a
      vocoder's excitation model does not glide like one;
    - the same change averaged over all bins (noise and harmonics together);
    - the mean height of a peak over its 9-bin neighbourhood (mel-driven vocoders flatten high harmonics).

    Not learnt from any forgery: `PhaseNovelty` only learns how these numbers vary in real speech."""
    x = torch.as_tensor(windows, dtype=torch.float32)
    spec = torch.stft(x, PHASE_FFT, PHASE_HOP, window=torch.hann_window(PHASE_FFT), return_complex=True)
    k = torch.arange(spec.shape[1], dtype=torch.float32)[None, :, None]
    phase = torch.angle(spec)
    deviation = _wrap(phase[..., 1:] - phase[..., :-1] - 2 * math.pi * k * PHASE_HOP / PHASE_FFT)
    change = _wrap(deviation[..., 1:] - deviation[..., :-1]).abs()  # (B, bins, frames - 2)
    mag = spec.abs()[..., 2:]
    logmag = torch.log(mag + 1e-7)
    energy = logmag.mean(1)
    loud = (energy > energy.median(dim=1, keepdim=True).values)[:, None, :]  # speech, not the pauses in it
    peak = torch.ones_like(mag, dtype=torch.bool)
    for shift in (1, 2, -1, -2):
        peak &= mag > torch.roll(mag, shift, 1)
    contrast = logmag - torch.stack([torch.roll(logmag, s, 1) for s in range(-4, 5)]).mean(0)
    out = []
    for lo, hi in PHASE_BANDS:
        band = slice(int(lo / RATE * PHASE_FFT) + 2, int(hi / RATE * PHASE_FFT) - 2)  # 2 bins in from the edges
        at = peak[:, band] & loud
        n = at.sum((1, 2)).clamp(min=1)
        c = change[:, band]
        some = at.any(2).any(1)  # a window with no peak at all: "random phase" (the mean of |uniform angle|)
        out += [torch.where(some, (c * at).sum((1, 2)) / n, math.pi / 2),
                torch.where(some, torch.where(at, c, math.nan).flatten(1).nanmedian(1).values, math.pi / 2),
                (c * loud).sum((1, 2)) / (loud.sum((1, 2)) * c.shape[1]).clamp(min=1),
                torch.where(some, (contrast[:, band] * at).sum((1, 2)) / n, 0.0)]
    return torch.stack(out, 1)


class PhaseNovelty(nn.Module):
    """One-class model of real speech: how far a window's `phase_stats` lie from real speech, as log(1 + squared
    Mahalanobis distance) to the nearest of a few Gaussians, one per channel real speech arrives through (shipped:
    as recorded, MP3 64k, Opus 24k). One Gaussian over all channels stretches to cover the codecs' damage and takes
    clean neural-vocoder copies in with it (held-out HiFi-GAN EER 29-35 % instead of 6.5 %, models/voice.md).
    It never sees a forgery, so whatever it catches is caught without training on it; the ridge keeps a direction
    where real speech hardly varies from dominating the distance."""

    def __init__(self, components: int = 3, dims: int = PHASE_STATS):
        super().__init__()
        self.register_buffer("mean", torch.zeros(components, dims))
        self.register_buffer("scale", torch.ones(components, dims))
        self.register_buffer("precision", torch.eye(dims).repeat(components, 1, 1))

    def fit(self, groups: list[torch.Tensor], ridge: float = 0.05) -> "PhaseNovelty":
        """One (windows, 16) tensor of real speech statistics per component."""
        if len(groups) != len(self.mean):
            raise ValueError(f"PhaseNovelty has {len(self.mean)} components, got {len(groups)} groups")
        for k, stats in enumerate(groups):
            mean, scale = stats.mean(0), stats.std(0) + 1e-6
            z = (stats - mean) / scale
            cov = z.T @ z / max(1, len(z) - 1) + ridge * torch.eye(z.shape[1])
            self.mean[k], self.scale[k], self.precision[k] = mean, scale, torch.linalg.inv(cov)
        return self

    def forward(self, stats: torch.Tensor) -> torch.Tensor:
        z = (stats[:, None] - self.mean[None]) / self.scale[None]  # (B, components, dims)
        return torch.log1p(torch.einsum("bki,kij,bkj->bk", z, self.precision, z).amin(1))


def features(windows: torch.Tensor | np.ndarray, frontend: str = "linear") -> torch.Tensor:
    """(B, samples) 16 kHz float -> (B, channels, bands, frames) log energies, loudness removed (and for linear_if
    the phase channel).

    linear / mel: 80 filterbank bands. spec: the 256 STFT bins themselves (31 Hz apart), which resolve the
    harmonics of a voice; filterbanks 100 Hz wide average them away, and the harmonic fine structure above 4 kHz is
    exactly what mel-driven vocoders (Griffin-Lim, LPC) fail to rebuild (models/voice.md, "front end").
    Subtracting each window's mean log energy makes the input independent of gain (a quiet recording is not a
    different voice) while keeping the spectral shape and its fine structure."""
    if frontend not in FRONTENDS:
        raise ValueError(f"unknown voice front end {frontend!r}; known: {', '.join(FRONTENDS)}")
    if frontend == "phase":  # (B, 16) statistics for PhaseNovelty, not a spectrogram
        return phase_stats(windows)
    x = torch.as_tensor(windows, dtype=torch.float32)
    if frontend == "wave":  # (B, 1, samples), unit RMS: the network's own filters do the rest (WaveFrontEnd)
        return (x / (x.pow(2).mean(1, keepdim=True).sqrt() + 1e-5)).unsqueeze(1)
    stft = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
    spec = stft.abs().pow(2)
    if frontend == "spec":
        fb = torch.log(spec[:, :N_FFT // 2] + 1e-8)  # drop the Nyquist bin: 256 bins
    else:
        bank = _linear_filters() if frontend == "linear" else _mel_filters()
        fb = torch.log(torch.einsum("fk,bkt->bft", bank, spec) + 1e-8)
    fb = (fb - fb.mean(dim=(1, 2), keepdim=True)).unsqueeze(1)
    if frontend == "linear_if":
        fb = torch.cat([fb, _if_wander(stft, spec).unsqueeze(1)], 1)
    return fb


def score_windows(model: "VoiceNet", windows: np.ndarray, frontend: str = "linear", chunk: int = 32) -> np.ndarray:
    """Raw logits of (N, samples) windows, `chunk` at a time (bounded memory on long recordings)."""
    out = []
    with torch.inference_mode():
        for s in range(0, len(windows), chunk):
            out.append(model(features(windows[s:s + chunk], frontend)).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


@dataclass
class Branch:
    """One trained VoiceNet, its front end and its Platt calibration (p = sigmoid(a * logit + b))."""

    model: "VoiceNet"
    frontend: str
    platt: tuple[float, float]

    @classmethod
    def of(cls, model: "VoiceNet", meta: dict) -> "Branch":
        """From weights loaded with `load_weights` (their metadata holds the front end and the calibration)."""
        return cls(model, meta.get("frontend", "linear"), tuple(meta["platt"]))

    @classmethod
    def load(cls, path: Path) -> "Branch":
        return cls.of(*load_weights(path))


def calibrated_logits(branches: list[Branch], windows: np.ndarray, chunk: int = 32) -> np.ndarray:
    """(models, windows): each model's window scores through its own calibration, so all are log-odds of
    "synthetic" on one scale."""
    return np.stack([a * score_windows(b.model, windows, b.frontend, chunk) + c
                     for b in branches for a, c in [b.platt]])


def calibrated_max(branches: list[Branch], windows: np.ndarray, chunk: int = 32) -> np.ndarray:
    """Window scores of one or more models, calibrated (`calibrated_logits`), the highest kept. The models are
    experts on different traces (the filterbank: neural vocoders and TTS; the phase model: harmonics whose phase
    moves unlike a recorded voice's; models/voice.md), so a window is as suspicious as the expert that finds it
    most suspicious. One model: just its calibrated logits."""
    return calibrated_logits(branches, windows, chunk).max(axis=0)


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


class WaveFrontEnd(nn.Module):
    """(B, 1, 32000) waveform -> (B, 1, 80, 200): strides 4 x 4 x 5 x 2 = 160 samples, one column per 10 ms like
    the filterbank front ends, 80 learnt rows in place of 80 bands. ~60 M multiply-adds per 2 s window."""

    def __init__(self, rows: int = 80):
        super().__init__()
        layers, cin = [], 1
        for cout, k, stride in ((32, 33, 4), (48, 9, 4), (64, 9, 5), (rows, 5, 2)):
            layers += [nn.Conv1d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm1d(cout),
                       nn.LeakyReLU(0.1, inplace=True)]
            cin = cout
        self.body = nn.Sequential(*layers)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.body(wave).unsqueeze(1)


class VoiceNet(nn.Module):
    """~0.1 M parameters: a strided stem, 4 residual stages, then mean+max pooling over frequency and time.
    Sized for CPU training: a step on 32 windows takes a fraction of a second on 2 cores.

    Heads: "linear" (shipped) gives a logit of "synthetic". "oc" is one-class softmax (Zhang, Jiang & Li, IEEE SPL
    2021): an embedding whose cosine with one learnt "real speech" direction is the score; training pulls real
    speech within a tight angle of it and only pushes fakes outside a wide one, so whatever does not look like real
    speech, in any direction, scores as fake. Its output is -OC_SCALE x cosine, also a "synthetic" logit."""

    def __init__(self, width: int = 16, frontend: str = "linear", head: str = "linear"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown voice head {head!r}; known: {', '.join(HEADS)}")
        w = width
        cin = channels_of(frontend)
        self.wave = WaveFrontEnd() if frontend == "wave" else None
        self.input_norm = nn.BatchNorm2d(cin)
        # On the 256-bin spectrogram a tall stem kernel sees a few harmonics (9 bins = 280 Hz) before striding
        # frequency by 4, so the stages after it run on a grid (64 x 100) close to the filterbank's (40 x 100).
        conv = (nn.Conv2d(cin, w, (9, 3), (4, 2), (4, 1), bias=False) if frontend == "spec"
                else nn.Conv2d(cin, w, 3, 2, 1, bias=False))
        self.stem = nn.Sequential(conv, nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        self.stages = nn.Sequential(_Block(w, w, 1), _Block(w, 2 * w, 2), _Block(2 * w, 3 * w, 2),
                                    _Block(3 * w, 4 * w, 2))
        self.head_kind = head
        if head == "oc":
            self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(8 * w, OC_DIM))
            self.real_direction = nn.Parameter(torch.randn(OC_DIM))
        else:
            self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(8 * w, 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if self.wave is not None:
            feats = self.wave(feats)
        h = self.stages(self.stem(self.input_norm(feats)))
        pooled = torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)
        if self.head_kind == "oc":
            cos = nn.functional.cosine_similarity(self.head(pooled), self.real_direction[None], dim=1)
            return -OC_SCALE * cos
        return self.head(pooled).squeeze(1)


def oc_softmax_loss(logits: torch.Tensor, fake: torch.Tensor, real_margin: float = 0.9,
                    fake_margin: float = 0.2) -> torch.Tensor:
    """One-class softmax on the "oc" head's output: real speech must reach cosine >= real_margin with the real
    direction, fakes only <= fake_margin (margins and scale from the paper)."""
    cos = -logits / OC_SCALE
    gap = torch.where(fake > 0.5, cos - fake_margin, real_margin - cos)
    return nn.functional.softplus(OC_SCALE * gap).mean()


def model_from_state(state: dict[str, torch.Tensor], frontend: str = "linear", width: int = 16,
                     head: str = "linear") -> nn.Module:
    """Saved tensors -> the model in eval mode: a VoiceNet for a spectrogram or waveform front end; for "phase",
    the one-class PhaseNovelty (with as many components as were saved); for "whisper", the Whisper branch's head."""
    if frontend == "whisper":  # the Whisper branch's back end (voice_whisper.py)
        from .voice_whisper import head_from_state

        return head_from_state(state).eval()
    model = PhaseNovelty(len(state["mean"])) if frontend == "phase" else VoiceNet(width, frontend, head)
    model.load_state_dict(state)
    return model.eval()


def save_weights(model: nn.Module, path: Path, meta: dict) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}  # 0.8 MB in float32: keep it exact
    save_file(state, str(path), metadata={"deepscreen": json.dumps(meta)})


def load_weights(path: Path) -> tuple[nn.Module, dict]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["deepscreen"])
    return model_from_state(load_file(str(path)), meta.get("frontend", "linear"), meta.get("width", 16),
                            meta.get("head", "linear")), meta
