"""The one packet loop for pictures and sound: demux a stream, decode what decodes, skip what does not."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from .av_probe import AV_ERRORS
from .errors import reason_of

log = logging.getLogger(__name__)

MAX_BAD_PACKETS = 100  # a stream whose packets keep failing is not worth decoding to the end


def decoded_frames(path: Path, container, stream, before_decode: Callable | None = None) -> Iterator:
    """Frames of `stream` in the order the decoder gives them. A damaged packet is skipped (up to MAX_BAD_PACKETS);
    a demuxer that gives up (truncated file, broken index) ends the frames where it stopped, keeping what decoded.
    `before_decode(packet)` runs before each packet is decoded (e.g. to set the decoder's frame skipping)."""
    bad = 0
    try:
        for packet in container.demux(stream):
            if before_decode is not None:
                before_decode(packet)
            try:
                frames = packet.decode()
            except AV_ERRORS:
                bad += 1
                if bad > MAX_BAD_PACKETS:
                    return
                continue
            yield from frames
    except AV_ERRORS as exc:
        log.debug("%s: demuxing stopped: %s", Path(path).name, reason_of(exc))
