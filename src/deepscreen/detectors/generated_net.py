"""The generated-image detector's network and patch cutting: numpy and torch only, so the lab can train it on a
machine that has nothing else installed (detectors/generated.py wraps it for the scanner).

A picture is judged on up to `K` luminance patches of `PATCH` px at its own resolution, where it has the most
texture. Each patch goes through two views of the same evidence:
  - a small CNN on the patch (mean removed), whose first layers see the pixel-level traces of up-sampling
    (checkerboards, repeated sub-pixel phases, painted-over texture), in the spirit of residual CNN detectors
    (Wang et al., CVPR 2020) and of AutoGAN's observation that up-sampling layers leave the fingerprint
    (Zhang et al., WIFS 2019);
  - the azimuthally averaged log power spectrum of the Hann-windowed patch (Durall et al., CVPR 2020), whose
    peaks and high-frequency fall-off differ between cameras and generators.
Both are concatenated into one logit per patch; a picture's logit is the mean of its patches'.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

PATCH = 64
K = 6
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_yy, _xx = np.mgrid[:PATCH, :PATCH] - PATCH // 2
RING = np.round(np.hypot(_yy, _xx)).astype(np.int64)  # ring of each centred FFT coefficient, 0..45
N_RINGS = int(RING.max()) + 1


def check_rgb(rgb) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got {getattr(rgb, 'shape', type(rgb).__name__)}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {rgb.dtype}")
    return rgb


def select_patches(rgb: np.ndarray, k: int = K, size: int = PATCH) -> tuple[np.ndarray, np.ndarray]:
    """The `k` most textured `size` px luminance patches of a picture (uint8, BT.601 luma rounded), on a grid of
    stride size/2 (coarser on big pictures: at most ~13 x 13 candidates). Returns ((n, size, size) uint8,
    (n, 2) top-left y, x), best first; n <= k and 0 when the picture is smaller than one patch."""
    check_rgb(rgb)
    h, w = rgb.shape[:2]
    if h < size or w < size:
        return np.zeros((0, size, size), np.uint8), np.zeros((0, 2), np.int64)
    stride = max(size // 2, int(np.ceil(max(h, w) / 13)))
    ys = np.unique(np.r_[np.arange(0, h - size + 1, stride), h - size])
    xs = np.unique(np.r_[np.arange(0, w - size + 1, stride), w - size])
    pos = np.array([(y, x) for y in ys for x in xs], np.int64)
    cand = np.rint(np.stack([rgb[y:y + size, x:x + size] for y, x in pos]).astype(np.float32) @ _LUMA)
    texture = np.abs(np.diff(cand, axis=1)).mean((1, 2)) + np.abs(np.diff(cand, axis=2)).mean((1, 2))
    keep = np.argsort(-texture, kind="stable")[:k]
    return cand[keep].clip(0, 255).astype(np.uint8), pos[keep]


def _block(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class PatchCNN(nn.Module):
    """(n, PATCH, PATCH) luminance 0..255 -> (n,) logits, higher = more likely generated."""

    def __init__(self, width: int = 16, spectrum: bool = True):
        super().__init__()
        c = width
        self.width, self.spectrum = width, spectrum
        # Full resolution for the first layer only (the traces live in neighbouring pixels), then stride 2 with the
        # width doubling: ~17 M multiply-adds per patch at width 16.
        self.features = nn.Sequential(*_block(1, c, 1), *_block(c, c, 2), *_block(c, 2 * c, 1),
                                      *_block(2 * c, 2 * c, 2), *_block(2 * c, 4 * c, 1), *_block(4 * c, 4 * c, 2))
        n_spec = N_RINGS if spectrum else 0
        if spectrum:
            self.register_buffer("ring", torch.from_numpy(RING.ravel()), persistent=False)
            self.register_buffer("ring_count", torch.bincount(torch.from_numpy(RING.ravel())).float(),
                                 persistent=False)
            self.register_buffer("hann", torch.outer(torch.hann_window(PATCH, periodic=False),
                                                     torch.hann_window(PATCH, periodic=False)), persistent=False)
            self.spec_norm = nn.BatchNorm1d(n_spec)
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(8 * c + n_spec, 1))

    def rings(self, x: torch.Tensor) -> torch.Tensor:
        """Azimuthally averaged log power spectrum of each (mean-removed) patch, its own mean level removed."""
        f = torch.fft.fft2(x * self.hann)
        logp = torch.log(f.real ** 2 + f.imag ** 2 + 1e-2).flatten(1)
        # RING is the distance to the centre of a shifted spectrum
        logp = torch.fft.fftshift(logp.view(-1, PATCH, PATCH), dim=(1, 2)).flatten(1)
        r = torch.zeros(len(x), N_RINGS, device=x.device, dtype=logp.dtype).index_add_(1, self.ring, logp)
        r = r / self.ring_count
        return r - r.mean(1, keepdim=True)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = y.float()
        x = x - x.mean((1, 2), keepdim=True)
        f = self.features(x[:, None] / 32)
        parts = [f.mean((2, 3)), f.amax((2, 3))]
        if self.spectrum:
            parts.append(self.spec_norm(self.rings(x)))
        return self.head(torch.cat(parts, 1))[:, 0]


def save_weights(model: PatchCNN, path: Path, meta: dict) -> None:
    from safetensors.torch import save_file

    meta = dict(meta, arch={"width": model.width, "spectrum": model.spectrum, "patch": PATCH, "k": K})
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"deepscreen": json.dumps(meta)})


def load_weights(path: Path) -> tuple[PatchCNN, dict]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["deepscreen"])
        state = {k: f.get_tensor(k) for k in f.keys()}
    arch = meta["arch"]
    if arch["patch"] != PATCH:
        raise ValueError(f"{path}: trained on {arch['patch']} px patches, this code cuts {PATCH}")
    model = PatchCNN(arch["width"], arch["spectrum"])
    model.load_state_dict(state)
    return model.eval(), meta
