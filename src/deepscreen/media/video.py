"""Video frames through PyAV: decode in order, convert to RGB only the frames that were asked for."""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from deepscreen.config import Limits, Sampling

from .av_probe import AV_ERRORS, open_container, stream_fps, video_stream
from .errors import media_error, reason_of
from .image import read_image
from .info import Frame, MediaInfo
from .packets import decoded_frames
from .sniff import sniff_format

log = logging.getLogger(__name__)

# Seek rather than decode through when the next target is this far ahead. Longer than any sane keyframe interval,
# so a seek lands past the current position instead of re-decoding frames already seen.
SEEK_GAP_S = 30.0
_FALLBACK_FPS = 25.0  # to time frames that carry no timestamp, in files that state no rate
# Sampling needs a few frames, not all: the decoder may drop frames that no other frame refers to (most B-frames of
# x264 and phone encoders: half the frames, a third of the decode time) unless they are shown within this many
# frame intervals of a target, so the nearest frame to each target is still exact. Dropping them never damages
# other frames. The choice is made per packet, from the time it will be shown: packets reach the decoder in
# decoding order, up to a run of B-frames (and frame threads) ahead of the frames coming out.
_NEAR_TARGET_FRAMES = 2.5


def sample_times(duration_s: float, sampling: Sampling) -> list[float]:
    """Target times (seconds from the first frame): `sampling.frames` of them, at most `max_fps` per second."""
    if sampling.frames < 1:
        raise ValueError("Sampling.frames must be at least 1")
    if duration_s is None or not math.isfinite(duration_s) or duration_s <= 0:
        return [0.0]
    n = sampling.frames
    if sampling.max_fps > 0:
        n = min(n, max(1, math.floor(duration_s * sampling.max_fps + 1e-9)))
    step = duration_s / n
    # The middle of n equal slices: skips a fade-in first frame and a last frame the stream may not have.
    return [(i + 0.5) * step for i in range(n)]


def iter_frames(
    path: Path, info: MediaInfo, sampling: Sampling = Sampling(), limits: Limits = Limits(), container=None
) -> Iterator[Frame]:
    """The sampled frames of a video (its one picture for an image), decoded in the format `info` names (sniffed
    again only if it names none). `container`: the video already open (media.source.MediaFile), else it is opened
    here."""
    path = Path(path)
    if info.kind == "image":
        yield Frame(0, 0.0, read_image(path, limits, info.format or None))
        return
    if info.kind != "video":
        raise media_error(path, f"has no video frames (an {info.kind} file)")
    if container is not None:
        yield from _frames(path, container, info, sampling, limits)
        return
    with open_container(path, info.format or sniff_format(path, limits)[1]) as container:
        yield from _frames(path, container, info, sampling, limits)


def _frames(path: Path, container, info: MediaInfo, sampling: Sampling, limits: Limits) -> Iterator[Frame]:
    vs = video_stream(container)
    if vs is None:
        raise media_error(path, "has no video stream")
    vs.codec_context.thread_type = "AUTO"
    yield from _sampled(path, container, vs, info, sampling, limits)


@dataclass
class _Decoded:
    frame: av.VideoFrame
    t: float  # seconds from the first frame
    index: int


def _sampled(path, container, vs, info: MediaInfo, sampling: Sampling, limits: Limits) -> Iterator[Frame]:
    fps = info.fps or stream_fps(vs) or _FALLBACK_FPS
    targets = None if sampling.all_frames or not info.duration_s else sample_times(info.duration_s, sampling)
    min_gap = 1.0 / (sampling.max_fps if sampling.max_fps > 0 else 1.0)  # rate cap when the duration is unknown
    can_seek = targets is not None and vs.time_base is not None
    landing = False
    t0 = None  # absolute time of the first frame
    skip_through = -math.inf  # after a seek: frames up to here were handled before it
    count = emitted = ti = 0
    prev = last_out = None

    def out(d: _Decoded) -> Frame:
        nonlocal emitted, last_out
        emitted += 1
        last_out = d
        return Frame(d.index, d.t, _to_rgb(path, d.frame))

    near_s = _NEAR_TARGET_FRAMES / fps

    def needed(t_abs: float) -> bool:
        """Whether a frame shown at this stream time must be decoded even if no other frame refers to it."""
        if t0 is None:  # before the first frame, times are not yet relative
            return True
        k = bisect.bisect_left(targets, t_abs - t0 - near_s)
        return k < len(targets) and targets[k] <= t_abs - t0 + near_s

    frames = _decode(path, container, vs, needed if targets is not None else None)
    while (f := next(frames, None)) is not None:
        count += 1
        if count > limits.max_frames_decoded:
            log.warning("%s: stopped after limits.max_frames_decoded=%d frames", path.name, limits.max_frames_decoded)
            break
        if f.width * f.height > limits.max_frame_pixels:  # a stream may change size after the header
            raise media_error(path, f"video frame is {f.width}x{f.height}, over the frame-size limit")
        if f.time is None:  # no timestamp: assume a constant rate, and seeking cannot be trusted
            can_seek = False
            t_abs = (t0 or 0.0) + (count - 1) / fps
        else:
            t_abs = float(f.time)
        t0 = t_abs if t0 is None else t0
        t = max(0.0, t_abs - t0)
        if landing:  # first frame after a seek: if it is not ahead, seeking only re-decodes, so stop seeking
            landing = False
            can_seek = can_seek and t > skip_through
        if t <= skip_through:
            continue
        if t > limits.max_duration_s:
            log.warning("%s: stopped at limits.max_duration_s=%.0f s", path.name, limits.max_duration_s)
            break
        # After a seek, or with dropped frames, the decode count is not the frame number; the timestamp is.
        cur = _Decoded(f, t, count - 1 if sampling.all_frames else round(t * fps))

        if sampling.all_frames:
            yield out(cur)
            continue
        if targets is None:
            if last_out is None or t >= last_out.t + min_gap - 1e-6:
                yield out(cur)
            continue
        if prev is not None and t < prev.t:  # a timestamp out of order (broken file): keep times increasing
            continue
        while ti < len(targets) and t >= targets[ti]:
            # Nearest frame to the target: timestamps, not a constant-rate assumption, decide.
            best = prev if prev is not None and targets[ti] - prev.t < t - targets[ti] else cur
            if best is not last_out:
                yield out(best)
            ti += 1
        if ti == len(targets):
            return  # nothing left to look for: stop decoding
        prev = cur
        if can_seek and targets[ti] - t > SEEK_GAP_S:
            try:
                container.seek(int((t0 + targets[ti]) / vs.time_base), stream=vs, backward=True)
            except AV_ERRORS as exc:  # unindexed or unseekable file: keep decoding in order
                log.debug("%s: seek failed (%s), decoding in order", path.name, reason_of(exc))
                can_seek = False
            else:
                log.debug("%s: seeked from %.2f s to %.2f s", path.name, t, targets[ti])
                frames.close()
                frames = _decode(path, container, vs, needed)
                skip_through, landing = t, True

    # The stream ended before the last targets (short or truncated): the last frame is the nearest one.
    if targets is not None and ti < len(targets) and prev is not None and prev is not last_out:
        yield out(prev)
    if emitted == 0:
        raise media_error(path, "no decodable video frames (truncated or corrupt?)")


def _decode(path: Path, container, vs, needed: Callable[[float], bool] | None = None) -> Iterator[av.VideoFrame]:
    """Decoded frames in presentation order (media.packets.decoded_frames). `needed(t)`: whether the frame of a
    packet shown at stream time t must be decoded; where it says no, frames that no other frame refers to are
    dropped. Packets with no timestamp are decoded."""
    skipping = None  # unknown: a decoder reused after a seek may still be dropping frames

    def set_skipping(packet) -> None:
        nonlocal skipping, needed
        if needed is None:
            return
        t = None if packet.pts is None or vs.time_base is None else float(packet.pts * vs.time_base)
        skip = t is not None and not needed(t)
        if skip != skipping:
            try:
                vs.codec_context.skip_frame = "NONREF" if skip else "DEFAULT"
                skipping = skip
            except (AttributeError, ValueError, *AV_ERRORS):  # a decoder without the option
                needed = None

    return decoded_frames(path, container, vs, set_skipping)


def _to_rgb(path: Path, frame: av.VideoFrame) -> np.ndarray:
    try:
        rgb = frame.to_ndarray(format="rgb24")
        quarter_turns = round((frame.rotation or 0) / 90) % 4
    except AV_ERRORS as exc:
        raise media_error(path, f"cannot convert video frame: {reason_of(exc)}") from exc
    if quarter_turns:  # display matrix, counter-clockwise like np.rot90: phones record portrait this way
        rgb = np.rot90(rgb, quarter_turns)
    return np.ascontiguousarray(rgb)
