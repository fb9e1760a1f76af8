"""A face autoencoder in the manner of DeepFaceLab's (the network behind DeepFaceLive's swaps), trained here, as a
painter of training forgeries: the face box goes in, the decoder's rendering of it comes out.

Why: a DeepFaceLab/DeepFaceLive swap pastes a face that a decoder drew from a small code, so inside the blend the
texture is the decoder's: skin smoothed to the code's resolution, detail rebuilt by sub-pixel up-sampling, colours
slightly off. Self-blends carry the camera's own texture, and GAN super-resolvers (`sbi.rerender`) paint sharp
detail that bought nothing on the dev swaps. No face-swap weights ship in a wheel; a small autoencoder trained on
the training people's faces for minutes on a CPU draws faces the way an under-trained swap model does.

Network (after DeepFaceLab's "DF" layout, Perov et al. 2020, arXiv:2005.05535; own code): four stride-2 5x5
convolutions (128 px -> 8 px), a dense bottleneck of CODE values, a dense layer back to 8x8, then four up-scaling
steps (3x3 convolution to 4x the channels + pixel shuffle) and a 3x3 convolution to RGB.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

SIZE = 128  # the painter's working size (DeepFaceLab's default resolution)
CODE = 256  # bottleneck width (DeepFaceLab's ae_dims default)
# The box around the face that is painted, as a multiple of the face's size (landmark extent), each side of its
# centre: it holds every mask sbi.make_mask draws.
BOX_HALF = (0.75, 0.95)


def _down(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 5, 2, 2), nn.LeakyReLU(0.1))


def _up(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, 4 * cout, 3, 1, 1), nn.LeakyReLU(0.1), nn.PixelShuffle(2))


class FaceAE(nn.Module):
    def __init__(self, width: int = 16, code: int = CODE):
        super().__init__()
        w = width
        self.encoder = nn.Sequential(_down(3, w), _down(w, 2 * w), _down(2 * w, 4 * w), _down(4 * w, 8 * w),
                                     nn.Flatten(), nn.Linear(8 * w * 64, code))
        self.inter = nn.Sequential(nn.Linear(code, 8 * w * 64), nn.Unflatten(1, (8 * w, 8, 8)))
        self.decoder = nn.Sequential(_up(8 * w, 8 * w), _up(8 * w, 4 * w), _up(4 * w, 2 * w), _up(2 * w, w),
                                     nn.Conv2d(w, 3, 3, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, SIZE, SIZE) in [0, 1] -> the decoder's rendering, same shape."""
        return self.decoder(self.inter(self.encoder(x * 2 - 1)))


def face_box(shape, lms: np.ndarray, half: float) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the square of `half` face sizes each side of the landmarks' centre, cut to the picture."""
    h, w = shape[:2]
    size, (cx, cy) = float(np.ptp(lms, axis=0).max()), lms.mean(0)
    r = size * half
    return max(0, int(cx - r)), max(0, int(cy - r)), min(w, int(cx + r)), min(h, int(cy + r))


def box_tensor(rgb: np.ndarray, box) -> torch.Tensor:
    x0, y0, x1, y1 = box
    crop = cv2.resize(np.clip(rgb[y0:y1, x0:x1], 0, 255).astype(np.uint8), (SIZE, SIZE),
                      interpolation=cv2.INTER_AREA)
    return torch.from_numpy(crop).permute(2, 0, 1).float() / 255.0


_LOADED: dict[str, FaceAE] = {}


def load_painter(path: str | Path) -> FaceAE:
    """The trained painter at `path` (safetensors), once per process."""
    key = str(path)
    if key not in _LOADED:
        from safetensors.torch import load_file

        state = load_file(key)
        model = FaceAE(width=int(state["encoder.0.0.weight"].shape[0]))
        model.load_state_dict(state)
        _LOADED[key] = model.eval()
    return _LOADED[key]


def paint(img: np.ndarray, lms: np.ndarray, rng: np.random.Generator, weights: str | Path) -> np.ndarray:
    """`img` (float or uint8 RGB) with the box around its face redrawn by the autoencoder at `weights`; float32."""
    model = load_painter(weights)
    box = face_box(img.shape, lms, float(rng.uniform(*BOX_HALF)))
    x0, y0, x1, y1 = box
    if min(x1 - x0, y1 - y0) < 16:
        return np.asarray(img, np.float32)
    with torch.inference_mode():
        out = model(box_tensor(img, box)[None])[0]
    painted = (out.permute(1, 2, 0).numpy() * 255).astype(np.float32)
    out_img = np.array(img, np.float32, copy=True)
    out_img[y0:y1, x0:x1] = cv2.resize(painted, (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC)
    return out_img
