"""A file read once: sniffed, probed and decoded from what was opened, pictures and sound alike.

`MediaFile` keeps the format and the open container from the probe through decoding: a photo's bytes are read once
(and hashed as they are read), a video's container decodes its pictures right after its headers were read, and
the sound track's first pass reads from that container too when there are no pictures. A video with sound is
opened twice: once for its pictures, once for its sound (each is read in its own pass).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from deepscreen.config import Limits, Sampling

from .audio import AudioReader
from .av_probe import header_info, open_container
from .image import image_info, read_image
from .info import Frame, MediaInfo
from .io import file_sha256, read_hashed
from .sniff import sniff_format
from .video import iter_frames

# A photo up to this size is read into memory once (decoded and hashed from those bytes); a larger file (rare: the
# pixel limit bounds what decodes) is hashed and decoded from disk.
HELD_IMAGE_BYTES = 256 * 1024**2


class MediaFile:
    """One file: `info` (kind, size, duration, streams, format), `sha256`, `frames()` and `sound()`. A context
    manager: leaving it closes what it opened. MediaError (one line naming the file) for anything unreadable."""

    def __init__(self, path: Path, limits: Limits = Limits()):
        self.path, self.limits = Path(path), limits
        self._stack = contextlib.ExitStack()
        self._container = None  # open, not yet demuxed
        self._data: bytes | None = None
        self._sha256: str | None = None
        kind, fmt = sniff_format(self.path, limits)
        try:
            if kind == "image":
                if self.path.stat().st_size <= HELD_IMAGE_BYTES:
                    self._data, self._sha256 = read_hashed(self.path)
                self.info: MediaInfo = image_info(self.path, fmt, limits, self._data)
            else:
                self._container = self._stack.enter_context(open_container(self.path, fmt))
                self.info = header_info(self.path, fmt, self._container, limits)
        except BaseException:
            self._stack.close()
            raise

    def __enter__(self) -> MediaFile:
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = file_sha256(self.path)
        return self._sha256

    def frames(self, sampling: Sampling = Sampling()) -> Iterator[Frame]:
        """The sampled frames (media.video.iter_frames), decoded from the container the probe opened. A video's
        displayed size is known only from its first frame (rotation): `info` is corrected then."""
        info = self.info
        if info.kind == "image":
            yield Frame(0, 0.0, read_image(self.path, self.limits, info.format, self._data))
            return
        container, self._container = self._container, None  # a container decodes its pictures once
        first = True
        for frame in iter_frames(self.path, info, sampling, self.limits, container):
            h, w = frame.rgb.shape[:2]
            if first and (h, w) == (info.width, info.height) and h != w:  # stored rotated (portrait phone video)
                info.width, info.height = w, h
            first = False
            yield frame

    def sound(self) -> AudioReader:
        """The sound track, decoded in blocks (media.audio.AudioReader); its first pass reads from the container
        the probe opened when the pictures did not take it."""
        container, self._container = self._container, None
        return AudioReader(self.path, self.limits, fmt=self.info.format, container=container)
