"""Turn per-crop detector outputs into one calibrated verdict per file, with its cues in words.

Rules (docs/verdicts.md explains them to users):
  - A face track's score is the mean logit of its most suspicious half of frames, then calibrated. The mean of
    the top half ignores frames where the face was blurred or turned away (they look authentic either way)
    yet needs more than one odd frame to convict a face; a swap that lasts the whole clip keeps its full weight.
  - The file's probability is the highest track probability: one manipulated person makes the file manipulated.
  - No face: the face detectors abstain and the verdict is 'inconclusive' (probability None), not 'authentic'.
  - Face and voice (videos with speech): the file's probability is the higher of the two; either one faked makes
    the file manipulated. When one is manipulated and the other looks clean, `cross_check` says so in words:
    that split is the signature of a lip-sync, a dub or a cloned voice laid over real footage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import Thresholds
from .detectors import FaceDetector
from .verdict import Evidence, FaceObservation, FaceTrack, TimelinePoint, VoiceAnalysis, percent


@dataclass
class CropResult:
    """One analysed face crop, as the scan core collects it."""

    track_id: int
    obs: FaceObservation
    crop: np.ndarray | None
    heatmap: np.ndarray
    landmarks_crop: np.ndarray | None  # landmarks in crop pixels, to name where the evidence is


def track_logit(logits: list[float]) -> float:
    z = np.sort(np.asarray(logits, float))[::-1]
    return float(z[: max(1, (len(z) + 1) // 2)].mean())


def fuse_tracks(results: list[CropResult], detector: FaceDetector) -> tuple[list[FaceTrack], list[Evidence]]:
    tracks, evidence = [], []
    for tid in sorted({r.track_id for r in results}):
        mine = [r for r in results if r.track_id == tid]
        peak = max(mine, key=lambda r: r.obs.logit)
        p = detector.calibrate(track_logit([r.obs.logit for r in mine]))
        tracks.append(FaceTrack(
            track_id=tid, probability=p, box=peak.obs.box, peak_frame=peak.obs.frame_index,
            peak_time_s=peak.obs.time_s, observations=[r.obs for r in mine],
            peak_crop=peak.crop, peak_heatmap=peak.heatmap,
        ))
        where = f"face {tid + 1}" + (f" ({len(mine)} frames, peak at {peak.obs.time_s:.1f} s)" if len(mine) > 1 else "")
        evidence.append(Evidence(detector.name, detector.version, p,
                                 f"{where}: {detector.explain(p, peak.heatmap, peak.landmarks_crop)}", tid))
    tracks.sort(key=lambda t: -t.probability)
    return tracks, evidence


def timeline(results: list[CropResult], sampled: list[tuple[int, float]]) -> list[TimelinePoint]:
    """Per analysed frame, the highest face probability (None where no face was seen)."""
    by_frame: dict[int, float] = {}
    for r in results:
        by_frame[r.obs.frame_index] = max(by_frame.get(r.obs.frame_index, 0.0), r.obs.probability)
    return [TimelinePoint(t, i, by_frame.get(i)) for i, t in sampled]


def file_probability(tracks: list[FaceTrack]) -> float | None:
    return max((t.probability for t in tracks), default=None)


def summarise(kind: str, probability: float | None, tracks: list[FaceTrack], thresholds: Thresholds,
              frames: int) -> str:
    label = thresholds.label(probability)
    if probability is None:
        where = f"in {frames} analysed frames" if kind == "video" else "in the image"
        return f"No face found {where}; the face detectors abstained, so nothing was scored."
    n = len(tracks)
    people = f"{n} face{'s' if n != 1 else ''}"
    worst = tracks[0]
    when = f" at {worst.peak_time_s:.1f} s" if kind == "video" else ""
    if label == "authentic":
        return f"{people} analysed; no sign of manipulation (highest {percent(probability)})."
    verb = "likely manipulated" if label == "manipulated" else "possibly manipulated"
    return f"{people} analysed; face {worst.track_id + 1} is {verb} ({percent(probability)}){when}."


def combine(face_p: float | None, voice: VoiceAnalysis | None) -> float | None:
    voice_p = voice.probability if voice else None
    known = [p for p in (face_p, voice_p) if p is not None]
    return max(known) if known else None


def cross_check(face_p: float | None, voice: VoiceAnalysis | None, thresholds: Thresholds) -> str | None:
    voice_p = voice.probability if voice else None
    if face_p is None or voice_p is None:
        return None
    if voice_p >= thresholds.manipulated and face_p < thresholds.suspicious:
        return (f"the voice sounds synthetic ({percent(voice_p)}) while the face looks authentic ({percent(face_p)}): "
                "typical of a cloned or dubbed voice over real footage")
    if face_p >= thresholds.manipulated and voice_p < thresholds.suspicious:
        return (f"the face looks manipulated ({percent(face_p)}) while the voice sounds natural ({percent(voice_p)}): "
                "typical of a face swap that kept the original sound")
    return None


def summarise_voice(probability: float | None, voice: VoiceAnalysis, thresholds: Thresholds) -> str:
    if probability is None:
        return f"No speech to judge: {voice.explanation.removeprefix('abstained: ')}."
    label = thresholds.label(probability)
    if label == "authentic":
        return (f"{voice.speech_s:.0f} s of speech analysed; the voice sounds natural "
                f"({percent(probability)} synthetic).")
    worst = max(voice.segments, key=lambda s: s.probability)
    verb = "likely synthetic" if label == "manipulated" else "possibly synthetic"
    return (f"{voice.speech_s:.0f} s of speech analysed; the voice is {verb} ({percent(probability)}), "
            f"most at {worst.start_s:.1f}-{worst.end_s:.1f} s.")
