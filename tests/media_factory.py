"""Real media files for tests, written with PyAV so no binary fixtures live in the repository."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(
    path: Path,
    frames: list[np.ndarray],
    fps: float,
    codec: str = "libx264",
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    *,
    format: str | None = None,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode HxWx3 uint8 RGB frames (even H and W) and optionally a mono float audio track (-1..1) as AAC.

    frames=[] with audio writes an audio-only file. `options` go to the video encoder (e.g. {'g': '10'}),
    `container_options` to the muxer (e.g. {'movflags': '+faststart'}); `format` forces the muxer ('ipod' for .m4a)."""
    path = Path(path)
    with av.open(str(path), "w", format=format, container_options=container_options or {}) as c:
        vs = None
        if frames:
            vs = c.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            vs.height, vs.width = frames[0].shape[:2]
            vs.pix_fmt = "yuv420p"
            vs.options = {"preset": "veryfast"} if codec == "libx264" else {}
            if codec == "libvpx-vp9":
                vs.options = {"deadline": "realtime", "cpu-used": "8"}
            vs.options.update(options or {})
        astream = None
        if audio is not None:
            astream = c.add_stream("aac", rate=sample_rate)
            astream.layout = "mono"
        for rgb in frames:
            for packet in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                c.mux(packet)
        if vs is not None:
            c.mux(vs.encode())
        if astream is not None:
            samples = np.asarray(audio, dtype=np.float32).reshape(1, -1)
            af = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = sample_rate, 0, Fraction(1, sample_rate)
            c.mux(astream.encode(af))  # PyAV re-chunks to the encoder's frame size
            c.mux(astream.encode())
    return path


def gradient(height: int, width: int, shift: int = 0) -> np.ndarray:
    """A smooth colour background, so encoders and face detectors see something natural-ish."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [(x * 255 // max(width - 1, 1) + shift) % 256, y * 255 // max(height - 1, 1), np.full_like(x, 128)], axis=2
    ).astype(np.uint8)


def level_frames(n: int, height: int = 48, width: int = 64, step: float = 2.5) -> list[np.ndarray]:
    """Flat grey frames whose brightness encodes the frame number (round(mean / step)), to check which frame came back."""
    return [np.full((height, width, 3), int(round(i * step)), np.uint8) for i in range(n)]


def sine(seconds: float, sample_rate: int = 16000, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
