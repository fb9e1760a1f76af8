"""Sound through PyAV: decode any audio file or a video's sound track to 16 kHz mono float32.

16 kHz mono is what the voice detector and the speech finder (silero-vad) take; telephone and codec speech lives
below 8 kHz anyway. Resampling happens in FFmpeg's resampler as packets decode, so memory is the output only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from deepscreen.config import Limits

from .av_probe import AV_ERRORS, open_container
from .errors import hms, media_error, reason_of
from .sniff import sniff_format

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
_MAX_BAD_PACKETS = 100


@dataclass
class Audio:
    samples: np.ndarray  # (n,) float32 in [-1, 1], mono
    rate: int  # samples per second
    source_rate: int | None  # the stream's own rate before resampling
    codec: str | None

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate


def read_audio(path: Path, limits: Limits = Limits(), rate: int = SAMPLE_RATE) -> Audio:
    """The first sound track of an audio or video file. MediaError when there is none or nothing decodes."""
    path = Path(path)
    kind, fmt = sniff_format(path, limits)
    if kind == "image":
        raise media_error(path, "is an image: it has no sound")
    max_samples = min(limits.max_audio_samples, int(limits.max_duration_s * rate))
    with open_container(path, fmt) as container:
        if not container.streams.audio:
            raise media_error(path, "has no sound track")
        stream = container.streams.audio[0]
        codec = stream.codec_context.name
        source_rate = stream.codec_context.sample_rate or None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks: list[np.ndarray] = []
        total = bad = 0
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except AV_ERRORS:  # one damaged packet: skip it, keep the rest
                    bad += 1
                    if bad > _MAX_BAD_PACKETS:
                        break
                    continue
                for frame in frames:
                    for out in resampler.resample(frame):
                        chunk = out.to_ndarray().reshape(-1)
                        chunks.append(chunk)
                        total += len(chunk)
                if total > max_samples:
                    log.warning("%s: sound stopped at the %s limit", path.name, hms(max_samples / rate))
                    break
            else:
                for out in resampler.resample(None):  # flush the resampler's delay line
                    chunks.append(out.to_ndarray().reshape(-1))
        except AV_ERRORS as exc:  # the demuxer gave up (truncated file): keep what decoded so far
            log.debug("%s: audio demux stopped: %s", path.name, reason_of(exc))
    samples = np.concatenate(chunks)[:max_samples] if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise media_error(path, "no decodable sound (truncated or corrupt?)")
    samples = np.nan_to_num(samples.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=-1.0)
    return Audio(np.clip(samples, -1.0, 1.0), rate, source_rate, codec)


def write_audio(target, samples: np.ndarray, fmt: str, codec: str, codec_rate: int = SAMPLE_RATE,
                bit_rate: int | None = None, rate: int = SAMPLE_RATE) -> None:
    """Encode mono float audio (-1..1, at `rate`) into a file path or a binary stream: demo media, test
    fixtures and the codec round trips of the generator side all write sound this one way."""
    with av.open(target, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=codec_rate)
        stream.layout = "mono"
        if bit_rate:
            stream.bit_rate = bit_rate
        add_audio(out, stream, samples, rate)


def add_audio(out, stream, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Encode and mux mono float audio into an audio stream of an open PyAV output (e.g. beside a video)."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)[None]
    frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=stream.rate)
    for fr in resampler.resample(frame) + resampler.resample(None):
        out.mux(stream.encode(fr))
    out.mux(stream.encode(None))
