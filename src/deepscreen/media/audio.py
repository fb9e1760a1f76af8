"""Sound through PyAV: decode any audio file or a video's sound track to 16 kHz mono float32.

16 kHz mono is what the voice detector and the speech finder (silero-vad) take; telephone and codec speech lives
below 8 kHz anyway. Resampling happens in FFmpeg's resampler as packets decode, so memory is the output only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from deepscreen.config import Limits

from .av_probe import AV_ERRORS, open_container
from .errors import hms, media_error, reason_of
from .packets import decoded_frames
from .sniff import sniff_format

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
BLOCK_SAMPLES = 60 * SAMPLE_RATE  # a minute a block: memory bounded, few Python round trips


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
    """The first sound track of an audio or video file, whole. MediaError when there is none or nothing decodes.
    For long files, `AudioReader.blocks` gives the same samples a block at a time."""
    reader = AudioReader(path, limits, rate)
    samples = np.concatenate(list(reader.blocks()))
    return Audio(samples, rate, reader.source_rate, reader.codec)


class AudioReader:
    """Decodes the first sound track in blocks, so memory does not grow with the duration (three hours at
    16 kHz are 690 MB as one float32 array). Each call of `blocks` decodes the file again from the start."""

    def __init__(self, path: Path, limits: Limits = Limits(), rate: int = SAMPLE_RATE, fmt: str | None = None,
                 container=None):
        """`fmt`: FFmpeg's demuxer for the file when it was sniffed already; `container`: the file already open and
        not yet demuxed (media.source.MediaFile), used by the first `blocks` call instead of opening it again."""
        self.path, self.limits, self.rate, self.fmt, self._open = Path(path), limits, rate, fmt, container
        self.source_rate: int | None = None  # the stream's own rate before resampling, once blocks() has started
        self.codec: str | None = None

    def blocks(self, block_samples: int = BLOCK_SAMPLES) -> Iterator[np.ndarray]:
        """float32 mono blocks in [-1, 1] of at least `block_samples` (the last one shorter), in order; together
        they are the whole track up to the duration limit. MediaError if there is no sound or none decodes."""
        path, rate = self.path, self.rate
        if self.fmt is None:
            kind, self.fmt = sniff_format(path, self.limits)
            if kind == "image":
                raise media_error(path, "is an image: it has no sound")
        left = min(self.limits.max_audio_samples, int(self.limits.max_duration_s * rate))  # samples still allowed
        total = 0
        given, self._open = self._open, None
        with contextlib.nullcontext(given) if given is not None else open_container(path, self.fmt) as container:
            if not container.streams.audio:
                raise media_error(path, "has no sound track")
            stream = container.streams.audio[0]
            self.codec = stream.codec_context.name
            self.source_rate = stream.codec_context.sample_rate or None
            pending: list[np.ndarray] = []
            held = 0
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for chunk in _decoded(path, container, stream, resampler, left, rate):
                chunk = chunk[:left - total]
                pending.append(chunk)
                held += len(chunk)
                total += len(chunk)
                if held >= block_samples:
                    yield _clean(np.concatenate(pending))
                    pending, held = [], 0
            if pending:
                yield _clean(np.concatenate(pending))
        if total == 0:
            raise media_error(path, "no decodable sound (truncated or corrupt?)")


def _decoded(path: Path, container, stream, resampler, max_samples: int, rate: int) -> Iterator[np.ndarray]:
    """Resampled chunks as packets decode (media.packets.decoded_frames: damaged packets skipped, a truncated file
    ends the sound where it stopped); decoding stops past `max_samples`."""
    total = 0
    try:
        for frame in decoded_frames(path, container, stream):
            for out in resampler.resample(frame):
                chunk = out.to_ndarray().reshape(-1)
                total += len(chunk)
                yield chunk
            if total > max_samples:
                log.warning("%s: sound stopped at the %s limit", path.name, hms(max_samples / rate))
                return
        for out in resampler.resample(None):  # flush the resampler's delay line
            yield out.to_ndarray().reshape(-1)
    except AV_ERRORS as exc:  # a frame the resampler refuses (a format change mid-stream): keep what came before
        log.debug("%s: sound stopped: %s", path.name, reason_of(exc))


def _clean(samples: np.ndarray) -> np.ndarray:
    samples = np.nan_to_num(samples.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(samples, -1.0, 1.0)


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
