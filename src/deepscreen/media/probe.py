"""probe(): what a file is and how big, from headers only, refusing anything over the limits."""

from __future__ import annotations

from pathlib import Path

from deepscreen.config import Limits

from .av_probe import av_info
from .image import image_info
from .info import MediaInfo
from .sniff import sniff_format


def probe(path: Path, limits: Limits = Limits()) -> MediaInfo:
    path = Path(path)
    kind, fmt = sniff_format(path, limits)
    if kind == "image":
        return image_info(path, fmt, limits)
    # Matroska/MP4 can hold only sound, Ogg can hold video: the streams decide, not the sniffed kind.
    return av_info(path, fmt, limits)
