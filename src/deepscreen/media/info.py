"""What probe() reports about a file and what iter_frames() yields."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class MediaInfo:
    kind: str  # 'image' | 'video' | 'audio'
    width: int | None  # as displayed: EXIF orientation / video rotation applied
    height: int | None
    duration_s: float | None
    fps: float | None
    frame_count: int | None  # estimated for video (stream metadata, else duration * fps); 1 for an image
    codec: str | None  # e.g. 'h264', 'jpeg', 'png'
    has_audio: bool
    # How to read it again without sniffing: FFmpeg's demuxer name, or Pillow's format name for an image.
    # Internal (not in the verdict's media facts).
    format: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        del d["format"]
        return d


@dataclass
class Frame:
    index: int  # frame index in the video (0 for an image)
    time_s: float  # presentation time in seconds, from the first frame
    rgb: np.ndarray  # HxWx3 uint8 RGB, C-contiguous
