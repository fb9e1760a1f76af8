"""Real media files for tests, written with PyAV so no binary fixtures live in the repository."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from deepscreen.media.audio import write_audio as write_audio_file


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
    """A smooth colour background (shift 0..100 brightens red, for motion), so encoders see something natural-ish."""
    y, x = np.mgrid[0:height, 0:width]
    red = np.clip(x * 155 // max(width - 1, 1) + shift, 0, 255)
    return np.stack([red, y * 255 // max(height - 1, 1), np.full_like(x, 128)], axis=2).astype(np.uint8)


def level_frames(n: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """Flat frames that show their own number (< 100): tens as the left half's brightness, units as the right's,
    in steps of 25 so lossy codecs cannot blur one number into the next. Read back with `frame_number`."""
    frames = []
    for i in range(n):
        f = np.empty((height, width, 3), np.uint8)
        f[:, : width // 2] = (i // 10 % 10) * 25
        f[:, width // 2 :] = (i % 10) * 25
        frames.append(f)
    return frames


def frame_number(rgb: np.ndarray) -> int:
    """The number drawn by `level_frames` (inner regions only: codecs smear the edge between the halves)."""
    h, w = rgb.shape[:2]
    tens = rgb[4 : h - 4, 4 : w // 2 - 4].mean()
    units = rgb[4 : h - 4, w // 2 + 4 : w - 4].mean()
    return int(round(tens / 25)) * 10 + int(round(units / 25))


def sine(seconds: float, sample_rate: int = 16000, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


AUDIO_FORMATS = {  # name -> (muxer, encoder, sample rate of the encoder)
    "wav": ("wav", "pcm_s16le", 16000),
    "flac": ("flac", "flac", 16000),
    "mp3": ("mp3", "libmp3lame", 16000),
    "opus": ("ogg", "libopus", 48000),
    "m4a": ("ipod", "aac", 16000),
}


def write_audio(path: Path, samples: np.ndarray, kind: str, sample_rate: int = 16000,
                bit_rate: int | None = None) -> Path:
    """Mono float audio (-1..1) at `sample_rate` as WAV, FLAC, MP3, Ogg/Opus or M4A (AAC), through PyAV."""
    fmt, codec, rate = AUDIO_FORMATS[kind]
    path = Path(path)
    write_audio_file(str(path), samples, fmt, codec, codec_rate=rate, bit_rate=bit_rate, rate=sample_rate)
    return path


def no_streams_mp4(path: Path) -> Path:
    """ftyp + moov with only a movie header: a valid MP4 holding no track at all."""

    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", 8 + len(payload)) + kind + payload

    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    mvhd = bytes(4) + struct.pack(">IIIIIH", 0, 0, 1000, 0, 0x10000, 0x100) + bytes(10) + matrix + bytes(24)
    mvhd += struct.pack(">I", 2)  # next track id
    path.write_bytes(box(b"ftyp", b"isom\x00\x00\x02\x00isommp41") + box(b"moov", box(b"mvhd", mvhd)))
    return path
