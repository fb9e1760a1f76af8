"""Container headers through PyAV: streams, size, rate, duration. Nothing is decoded except one frame for rotation."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import av

from deepscreen.config import Limits

from .errors import hms, media_error, megapixels, reason_of
from .info import MediaInfo

AV_ERRORS = (av.error.FFmpegError, OSError, ValueError, EOFError)
_PEEK_PACKETS = 64  # frame threads and B-frames delay the first picture by a few packets


@contextlib.contextmanager
def open_container(path: Path, fmt: str) -> Iterator[av.container.InputContainer]:
    """Open with the demuxer sniff() chose.

    A Python file object, not a path string: FFmpeg would read 'concat:...' or 'http:' in a file name as a protocol,
    and custom I/O also stops demuxers from following references to other files."""
    with open(path, "rb") as fp:
        try:
            container = av.open(fp, format=fmt, metadata_errors="replace", buffer_size=1 << 20)
        except AV_ERRORS as exc:
            raise media_error(path, f"cannot open as media: {reason_of(exc)} (truncated or corrupt?)") from exc
        with container:
            yield container


def video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    # Cover art in MP3/M4A/MKV is a one-picture "video" stream; it does not make the file a video.
    for s in container.streams.video:
        if not s.disposition & av.stream.Disposition.attached_pic:
            return s
    return None


def av_info(path: Path, fmt: str, limits: Limits) -> MediaInfo:
    """The streams' facts, with a video's size as displayed (one frame is decoded to read its rotation)."""
    with open_container(path, fmt) as c:
        info = header_info(path, fmt, c, limits)
        if info.kind == "video" and _first_rotation(c, video_stream(c)) % 180 == 90:
            info.width, info.height = info.height, info.width  # phones store portrait video as rotated landscape
        return info


def header_info(path: Path, fmt: str, c: av.container.InputContainer, limits: Limits) -> MediaInfo:
    """The streams' facts from the headers alone, checked against the limits; nothing is demuxed, so the same
    container can go on to decode. A video's size is as stored: rotation shows only on decoded frames."""
    vs, audio = video_stream(c), list(c.streams.audio)
    if vs is None:
        if not audio:
            raise media_error(path, "has no video or sound stream")
        duration = _duration(c, audio[0])
        _check_duration(path, "audio", duration, limits)
        return MediaInfo("audio", None, None, duration, None, None, audio[0].codec_context.name, True, fmt)
    w, h = vs.codec_context.width, vs.codec_context.height
    if not w or not h:
        raise media_error(path, "video stream has no frame size (truncated or corrupt?)")
    if w * h > limits.max_frame_pixels:
        limit = megapixels(limits.max_frame_pixels)
        raise media_error(path, f"video frames are {w}x{h} = {megapixels(w * h)} MP, over the {limit} MP limit")
    fps, duration = stream_fps(vs), _duration(c, vs)
    _check_duration(path, "video", duration, limits)
    frames = vs.frames or (round(duration * fps) if duration and fps else None)
    return MediaInfo("video", w, h, duration, fps, frames, vs.codec_context.name, bool(audio), fmt)


def stream_fps(vs: av.video.stream.VideoStream) -> float | None:
    for rate in (vs.average_rate, vs.guessed_rate, vs.base_rate):
        # Matroska and broken files report time-base-like rates (1000, 90000); no camera shoots that fast.
        if rate and 0 < float(rate) <= 1000:
            return float(rate)
    return None


def _duration(c: av.container.InputContainer, stream: av.stream.Stream) -> float | None:
    if stream.duration and stream.time_base:
        d = float(stream.duration * stream.time_base)
    elif c.duration:
        d = c.duration / av.time_base
    else:
        return None
    return d if d > 0 and math.isfinite(d) else None


def _check_duration(path: Path, kind: str, duration: float | None, limits: Limits) -> None:
    if duration is not None and duration > limits.max_duration_s:
        raise media_error(path, f"{kind} is {hms(duration)} long, over the {hms(limits.max_duration_s)} limit")


def _first_rotation(c: av.container.InputContainer, vs: av.video.stream.VideoStream) -> int:
    """Display rotation in degrees, read from the first decoded frame (PyAV exposes it only there).

    Best effort: a file that cannot decode one frame is reported by iter_frames, not here."""
    try:
        for n, packet in enumerate(c.demux(vs)):
            for frame in packet.decode():
                return int(frame.rotation or 0)
            if n >= _PEEK_PACKETS:  # don't read a whole broken file here
                break
    except AV_ERRORS:
        pass
    return 0
