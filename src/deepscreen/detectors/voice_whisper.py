"""The voice detector's Whisper branch: a small trained back end on the frame sequence of a Whisper encoder's second
block (frozen, `whisper_encoder.torch_encoder`; which encoder, the weights' `encoder` says), fused with the
filterbank and phase branches (models/voice.md).

Why a middle block: held out by system, the encoder's output layer ranks other people's TTS near chance (AUC 0.65),
block 2 at 0.82, and its errors differ from the filterbank network's, so the two fused catch more at fewer false
alarms than either (models/voice_history.md). Kawa et al. (Interspeech 2023) put a trained network on Whisper's
frame sequence; detectors on pretrained speech encoders find middle layers as telling as the top one.

The encoder reads a recording as Whisper does, in 30-s chunks from its start, each with its own log-mel
normalisation; a 2-s window is the 100 encoder frames from its start (50 per second). Chunks are encoded as the
audio arrives and frames no window needs any more are dropped, so memory does not grow with the duration.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .whisper_encoder import DIM, RATE, log_mel

CHUNK = 30 * RATE  # Whisper's context
WINDOW = 100  # encoder frames of a 2-s window
MIN_CHUNK = 640  # a tail shorter than two encoder frames is not encoded


class SeqHead(nn.Module):
    """(B, T, width) encoder frames -> (B,) logits: a projection, two temporal convolutions and attentive mean and
    standard deviation pooling (a speaker-verification style head, small enough to train many times on a CPU)."""

    def __init__(self, dim: int = DIM, width: int = 96):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, width)
        self.convs = nn.Sequential(nn.Conv1d(width, width, 5, padding=2), nn.GELU(),
                                   nn.Conv1d(width, width, 5, padding=2), nn.GELU())
        self.attend = nn.Conv1d(width, 1, 1)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(2 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.gelu(self.proj(self.norm(x))).transpose(1, 2)
        h = h + self.convs(h)
        a = torch.softmax(self.attend(h), dim=2)
        mean = (h * a).sum(2)
        std = ((h - mean[..., None]) ** 2 * a).sum(2).clamp_min(1e-6).sqrt()
        return self.out(self.drop(torch.cat([mean, std], 1)))[:, 0]


class SeqHeads(nn.Module):
    """Heads trained alike from different seeds, scoring as their mean logit: held out, one head's catches move by
    up to ten points from seed to seed, and the mean is steadier than any one (models/voice_history.md)."""

    def __init__(self, n: int, dim: int = DIM):
        super().__init__()
        self.heads = nn.ModuleList(SeqHead(dim) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([h(x) for h in self.heads]).mean(0)


def head_from_state(state: dict[str, torch.Tensor]) -> nn.Module:
    """A saved back end, one head or several (`SeqHeads`), at the width of the encoder it was trained on (384 for
    tiny.en, 512 for base)."""
    n = len({k.split(".")[1] for k in state if k.startswith("heads.")})
    if n:
        model = SeqHeads(n, dim=state["heads.0.norm.weight"].shape[0])
    else:
        model = SeqHead(dim=state["norm.weight"].shape[0])
    model.load_state_dict(state)
    return model


def encode_chunk(encoder: nn.Module, chunk: np.ndarray, layers: tuple[int, ...]) -> np.ndarray:
    """(len(layers), frames, width) float16 outputs of the chosen blocks over one chunk of at most 30 s (float16:
    what the lab stores and trains on)."""
    mel = log_mel(chunk)
    mel = mel[:, : mel.shape[1] - mel.shape[1] % 2]
    with torch.inference_mode():
        outs = encoder(torch.from_numpy(mel)[None])
    return torch.stack([outs[k][0] for k in layers]).numpy().astype(np.float16)


def encode_recording(encoder: nn.Module, samples: np.ndarray, layers: tuple[int, ...]) -> np.ndarray:
    """(len(layers), frames, width) float16 over a whole recording, chunk by chunk."""
    parts = [encode_chunk(encoder, samples[s:s + CHUNK], layers) for s in range(0, max(len(samples), 1), CHUNK)
             if len(samples[s:s + CHUNK]) >= MIN_CHUNK]
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(layers), 1, encoder.conv1.out_channels),
                                                                 np.float16)


def encoder_frame(samples: np.ndarray) -> np.ndarray:
    """The encoder frame a window starting at these samples starts at: its filterbank frame (10 ms, rounded, as
    the lab stores window starts) halved."""
    return np.round(np.asarray(samples) / 160).astype(np.int64) // 2


def window_frames(frames: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """(N, 100, width) frames of the windows starting at encoder frames `starts` of a recording's (T, width) frames:
    a window past the end is moved back to end with them; a recording under 2 s repeats itself."""
    if len(frames) < WINDOW:
        frames = np.resize(frames, (WINDOW, frames.shape[1]))
    starts = np.minimum(np.asarray(starts), len(frames) - WINDOW)
    return frames[starts[:, None] + np.arange(WINDOW)[None]]


class FrameStream:
    """One block of Whisper frames of a recording that arrives in blocks: `feed` each block in order, `frames_for`
    a window when `ready` says its frames are encoded (or after `finish`), `drop_before` frames no window needs."""

    def __init__(self, encoder: nn.Module, layer: int):
        self.encoder, self.layer = encoder, layer
        self.pending = np.zeros(0, np.float32)  # samples of the chunk being filled
        self.frames = np.zeros((0, encoder.conv1.out_channels), np.float16)  # frames [first, first + len)
        self.first = 0
        self.finished = False

    def feed(self, block: np.ndarray) -> None:
        self.pending = np.concatenate([self.pending, np.asarray(block, np.float32)])
        while len(self.pending) >= CHUNK:
            self._encode(self.pending[:CHUNK])
            self.pending = self.pending[CHUNK:]

    def finish(self) -> None:
        if not self.finished and len(self.pending) >= MIN_CHUNK:
            self._encode(self.pending)
        self.pending, self.finished = np.zeros(0, np.float32), True

    def _encode(self, chunk: np.ndarray) -> None:
        self.frames = np.concatenate([self.frames, encode_chunk(self.encoder, chunk, (self.layer,))[0]])

    def ready(self, start: int) -> bool:
        """Whether the window from encoder frame `start` can be cut (near the end, only once all is encoded: a
        window past the end is moved back)."""
        return self.finished or start + WINDOW <= self.first + len(self.frames)

    def frames_for(self, starts: np.ndarray) -> np.ndarray:
        if not self.finished:
            return self.frames[np.asarray(starts)[:, None] - self.first + np.arange(WINDOW)[None]]
        if self.first == 0:
            return window_frames(self.frames, starts)
        total = self.first + len(self.frames)  # only the end is kept: windows past it are moved back
        starts = np.minimum(np.asarray(starts), total - WINDOW)
        return self.frames[starts[:, None] - self.first + np.arange(WINDOW)[None]]

    def drop_before(self, frame: int) -> None:
        cut = int(min(max(0, frame - self.first), len(self.frames)))
        if cut:
            self.frames, self.first = self.frames[cut:], self.first + cut


class WhisperBranch:
    """The trained head, the encoder up to the block it reads, and the calibrations the weights carry: `platt`
    per window (even odds, so it compares with the other branches), `recording_platt` (this branch's recordings),
    and `stack`, the fusion with the filterbank and phase branches fitted on held-out scores (models/voice.md)."""

    frontend = "whisper"

    def __init__(self, head: nn.Module, meta: dict):
        from .whisper_encoder import torch_encoder

        self.head, self.meta = head.eval(), meta
        self.layer = int(meta["layer"])
        self.platt = tuple(meta["platt"])
        self.recording_platt = tuple(meta["recording_platt"])
        self.stack_weights = tuple(meta["stack"]["weights"])  # main branches', this one's, intercept
        self.stack_platt = tuple(meta["stack"]["platt"])
        self.floor = bool(meta["stack"].get("floor", False))
        self.encoder = torch_encoder(blocks=self.layer, model=meta.get("encoder", "tiny.en"))

    @classmethod
    def load(cls, path) -> tuple["WhisperBranch", dict]:
        from .voicenet import load_weights

        head, meta = load_weights(path)
        return cls(head, meta), meta

    def stream(self) -> FrameStream:
        return FrameStream(self.encoder, self.layer)

    def logits(self, frames: np.ndarray, chunk: int = 1) -> np.ndarray:
        """Calibrated log-odds (the window calibration) of (N, 100, width) window frames, one window per call by
        default: a window's score must not depend on which others were ready with it (that follows the blocks
        the audio arrives in), and a batch's sums do."""
        a, b = self.platt
        out = []
        with torch.inference_mode():
            for s in range(0, len(frames), chunk):
                out.append(self.head(torch.from_numpy(frames[s:s + chunk].astype(np.float32))).numpy())
        return a * np.concatenate(out).astype(np.float64) + b if out else np.zeros(0)

    def fuse(self, main: np.ndarray, main_recording_platt: tuple[float, float], whisper: np.ndarray) -> np.ndarray:
        """Calibrated window log-odds of the stack (no further calibration follows): each side through its
        recording calibration (affine and increasing, so a recording's pooled windows give that side's recording
        score), weighted, plus the intercept, through `stack_platt`; with `floor`, never under the main side's
        own score (the lab's `Stack`)."""
        (w_main, w_whisper, w0), (a1, b1), (a2, b2) = self.stack_weights, main_recording_platt, self.recording_platt
        (a, b), own = self.stack_platt, a1 * main + b1
        fused = a * (w_main * own + w_whisper * (a2 * whisper + b2) + w0) + b
        return np.maximum(fused, own) if self.floor else fused
