"""Typed results of a scan: what `deepscreen.scan` returns and every front end (CLI, report, service, batch) reads.

Plain dataclasses so they serialise to JSON with `to_dict()` and stay cheap to build.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .config import Thresholds

Label = Literal["authentic", "suspicious", "manipulated", "inconclusive", "error"]
Kind = Literal["image", "video", "audio", "unknown"]


@dataclass
class Evidence:
    """One detector's finding. `score` is the calibrated probability of manipulation it assigns (0–1)."""

    detector: str
    version: str
    score: float | None  # None: the detector abstained (e.g. no face, no speech)
    explanation: str  # one line, in words a journalist can read
    track_id: int | None = None  # the face track it is about, when it is about one


@dataclass
class FaceObservation:
    """One face in one analysed frame."""

    frame_index: int
    time_s: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels
    probability: float  # calibrated probability this crop is manipulated
    logit: float  # uncalibrated detector output, kept for fusion and debugging
    # Variance of the Laplacian of the aligned grey crop: how much fine detail the detector had to judge (a
    # blurred or heavily compressed face scores low); fusion weighs and abstains by it.
    sharpness: float | None = None


@dataclass
class FaceTrack:
    """One person across the analysed frames (a single observation for an image)."""

    track_id: int
    probability: float | None  # None: the detector abstained on this face (`abstained` says why)
    box: tuple[int, int, int, int]  # box at the most suspicious frame
    peak_frame: int
    peak_time_s: float
    observations: list[FaceObservation] = field(default_factory=list)
    # Aligned crop (HxWx3 uint8 RGB) and heat map (hxw float 0–1) at the peak frame, for the HTML report.
    # Not serialised to JSON.
    peak_crop: Any = field(default=None, repr=False)
    peak_heatmap: Any = field(default=None, repr=False)
    abstained: str | None = None  # why this face could not be judged (too small, too soft, seen too briefly)


@dataclass
class TimelinePoint:
    time_s: float
    frame_index: int
    probability: float | None  # max over faces in that frame; None when no face was seen


@dataclass
class VoicePoint:
    time_s: float  # start of a one-second slot
    probability: float | None  # None: no speech in that second


@dataclass
class VoiceSegment:
    """A stretch of speech (from the voice-activity detector) and how synthetic it sounds."""

    start_s: float
    end_s: float
    probability: float


@dataclass
class VoiceAnalysis:
    """The sound track or audio file: how likely the voice is synthetic, where, and why."""

    probability: float | None  # None: abstained (no or too little speech)
    speech_s: float  # seconds of speech found
    duration_s: float
    segments: list[VoiceSegment] = field(default_factory=list)
    timeline: list[VoicePoint] = field(default_factory=list)  # one point per second
    explanation: str = ""


@dataclass
class ModelInfo:
    name: str
    version: str
    sha256: str  # hash of the weight file, so a verdict can be traced to exact weights
    precision: str = "float32"  # arithmetic the scores were computed in (bfloat16 on CPUs with native support)
    runtime: str = "torch"  # what ran the network: torch or onnxruntime


@dataclass
class Verdict:
    path: str
    sha256: str
    kind: Kind
    probability: float | None  # calibrated P(manipulated); None when no detector could say anything
    label: Label
    summary: str  # one line in words
    faces: list[FaceTrack] = field(default_factory=list)
    timeline: list[TimelinePoint] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    models: list[ModelInfo] = field(default_factory=list)
    media: dict[str, Any] = field(default_factory=dict)  # width, height, duration_s, fps, frames analysed...
    voice: VoiceAnalysis | None = None  # audio files and videos with a sound track
    # When the face and the voice disagree (one manipulated, the other clean): a lip-sync or dub, in words.
    cross_check: str | None = None
    # What the file declares about its origin (detectors/provenance.py: Content Credentials, generator watermarks,
    # generator metadata), whether or not anything was found; None when the provenance reader did not run.
    provenance: dict[str, Any] | None = None
    # The bands the label and the words were made with (--threshold, --suspicious-from; defaults in config.py).
    thresholds: Thresholds = field(default_factory=Thresholds)
    elapsed_s: float = 0.0
    # Milliseconds per stage (prepared.STAGES: decode, faces, speech, face_cnn, voice, provenance, fusion), to
    # show where the time goes. Decoding runs ahead in its own thread, so the stages can add up to more than
    # elapsed_s.
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # one-line reason when label == "error"
    # True when the file name had bytes that are not UTF-8 and `path` shows them as backslash escapes ('\\xff');
    # written to JSON only then.
    path_escaped: bool = False

    @property
    def flagged(self) -> bool:
        """True when a screening front end should divert this file (exit code 1, quarantine)."""
        return self.label in ("suspicious", "manipulated")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["path_escaped"]:
            del d["path_escaped"]
        for face in d["faces"]:
            face.pop("peak_crop", None)
            face.pop("peak_heatmap", None)
        d["timings"] = {k: round(v, 1) for k, v in d["timings"].items()}
        return _rounded(d)


def percent(p: float | None) -> str:
    """A probability as people read it: whole percents, but never a rounded "100%" or "0%", which would claim a
    certainty no detector has (">99%", "<1%"); "n/a" when there is no number."""
    try:
        p = float(p)
    except (TypeError, ValueError):
        return "n/a"
    if not math.isfinite(p):
        return "n/a"
    return ">99%" if p > 0.99 else "<1%" if p < 0.01 else f"{100 * p:.0f}%"  # so the number is 1 to 99


def _rounded(obj: Any) -> Any:
    """Round floats for readable JSON; 4 decimals is far below any meaningful difference here."""
    if isinstance(obj, float):
        return round(obj, 4)
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v) for v in obj]
    return obj
