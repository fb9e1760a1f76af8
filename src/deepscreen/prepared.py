"""What `Scanner.prepare` finds in a file before any detector runs, as plain picklable data.

Decoding, face finding and speech finding happen once, in `prepare`; the detectors and the verdict builder run in
`judge` on this alone (possibly in another process: a batch engine runs the two steps on different workers). Only
a sound track longer than HELD_SOUND_S is not carried: `judge` decodes its speech windows from the file again, a
block at a time, so memory stays flat over hours of sound.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import Limits
from .media.info import MediaInfo
from .media.speech import SpeechSegment

HELD_SOUND_S = 600.0  # ten minutes of 16 kHz float32 sound: 38 MB carried instead of decoding the file twice
STAGES = ("decode", "faces", "speech", "face_cnn", "voice", "provenance", "fusion")  # Verdict.timings keys


@dataclass
class FaceCrop:
    """One face in one analysed frame, aligned for the face detectors."""

    track_id: int
    frame_index: int
    time_s: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels
    crop: np.ndarray  # SxSx3 uint8 RGB, aligned by faces.align
    landmarks: np.ndarray  # in crop pixels, to name where the evidence is
    sharpness: float  # variance of the Laplacian of the grey crop (fusion weighs and abstains by it)


@dataclass
class Sound:
    """The sound track (or audio file) at 16 kHz mono: where the speech is, and the samples when short enough."""

    n_samples: int = 0
    segments: list[SpeechSegment] = field(default_factory=list)
    samples: np.ndarray | None = None  # the whole track, when it has speech and is under HELD_SOUND_S
    problem: str | None = None  # why a video's sound track could not be read: its voice detector abstains

    @property
    def duration_s(self) -> float:
        from .media.audio import SAMPLE_RATE

        return self.n_samples / SAMPLE_RATE

    def blocks(self, path: Path, limits: Limits, fmt: str) -> Iterable[np.ndarray]:
        """The samples, held or decoded again from the file in blocks."""
        if self.samples is not None:
            return [self.samples]
        from .media.audio import AudioReader

        return AudioReader(path, limits, fmt=fmt).blocks()


@dataclass
class Prepared:
    """A file decoded and searched for faces and speech; `error` set (one line naming the file) when it could not
    be, and then nothing else is."""

    path: Path
    info: MediaInfo | None = None
    sha256: str = ""
    sampled: list[tuple[int, float]] = field(default_factory=list)  # (frame index, time s) of each analysed frame
    crops: list[FaceCrop] = field(default_factory=list)
    sound: Sound | None = None  # audio files and videos with a sound track, when a voice detector is loaded
    provenance: dict | None = None  # what the file declares (detectors.provenance `find`), judged in `judge`
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))  # ms per stage
    elapsed_s: float = 0.0
    error: str | None = None
