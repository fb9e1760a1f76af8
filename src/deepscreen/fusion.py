"""Turn per-crop detector outputs into one calibrated verdict per file, with its cues in words.

Rules (docs/verdicts.md explains them to users):
  - Frames where the face is too small or too soft for the detector to judge at its measured rate (limits read
    from its weights, `FaceLimits`) are not scored; a track left with none abstains and says why.
  - A face track's score is the weighted median of its frames' logits, weighted by each crop's detail
    (sharpness, saturating), then calibrated. A swap is on the face in most frames, so its median stays high; a
    real face's score jumps from frame to frame with blur, pose and compression, and the median ignores those
    jumps where the mean of the most suspicious frames (the rule before v2.0) was led by them (models/face_blend.md).
    In a video a face must be judged in at least MIN_VIDEO_FRAMES frames: faces glimpsed once are not convicted.
  - The file's probability is the highest track probability: one manipulated person makes the file manipulated.
  - No face, or no face that could be judged: the face detectors abstain and the verdict is 'inconclusive'
    (probability None), not 'authentic'.
  - Face and voice (videos with speech): the file's probability is the higher of the two; either one faked makes
    the file manipulated. When one is manipulated and the other looks clean, `cross_check` says so in words:
    that split is the signature of a lip-sync, a dub or a cloned voice laid over real footage.
  - Provenance (detectors/provenance.py): a file that declares its own AI generation (valid Content Credentials, a
    Stable Diffusion watermark, generator metadata) gets at least the provenance score, and the summary leads with
    that cue: the file says what it is, whatever the face and voice detectors saw. Everything else the provenance
    reader finds (a camera-capture manifest, a manifest that no longer validates) is reported in the evidence and
    the summary but does not move the probability; finding nothing changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import Thresholds
from .detectors import FaceDetector, FaceLimits
from .verdict import Evidence, FaceObservation, FaceTrack, TimelinePoint, VoiceAnalysis, percent


@dataclass
class CropResult:
    """One analysed face crop, as the scan core collects it."""

    track_id: int
    obs: FaceObservation
    crop: np.ndarray | None
    heatmap: np.ndarray
    landmarks_crop: np.ndarray | None  # landmarks in crop pixels, to name where the evidence is


MIN_VIDEO_FRAMES = 3  # judged frames a video face track needs (of 16 analysed by default)
SHARPNESS_CAP = 200.0  # beyond this much detail a frame is not more trustworthy: weights saturate here


def weighted_median(values, weights=None) -> float:
    z = np.asarray(values, float)
    w = np.ones_like(z) if weights is None else np.asarray(weights, float)
    order = np.argsort(z, kind="stable")
    z, w = z[order], np.maximum(w[order], 1e-9)
    cum = np.cumsum(w)
    return float(z[np.searchsorted(cum, 0.5 * cum[-1])])


def track_logit(logits: list[float], sharpness: list[float | None] | None = None) -> float:
    """A face track's score: the highest weighted median over every stretch of consecutive judged frames half the
    track long (at least MIN_VIDEO_FRAMES), each frame weighted by its crop's sharpness (capped). A face swapped
    for the whole clip, or spliced in for half of it, holds high over such a stretch; a real face's isolated
    spikes (blur, a turned head, a compression burst) do not. One frame (a photo) is its own score."""
    z = list(logits)
    w = [SHARPNESS_CAP if s is None else min(s, SHARPNESS_CAP) for s in sharpness] if sharpness else [1.0] * len(z)
    k = min(len(z), max(MIN_VIDEO_FRAMES, -(-len(z) // 2)))
    return max(weighted_median(z[i:i + k], w[i:i + k]) for i in range(len(z) - k + 1))


def unjudgeable(obs: FaceObservation, limits: FaceLimits) -> str | None:
    """Why this face cannot be judged at the detector's measured rate, or None if it can."""
    width = obs.box[2] - obs.box[0]
    why = f", {limits.note.strip('() ')}" if limits.note.strip("() ") else ""
    if width < limits.min_width:
        return f"too small to judge: {width} px wide, under {limits.min_width:.0f} px{why}"
    if obs.sharpness is not None and obs.sharpness < limits.min_sharpness:
        return f"too soft or compressed to judge: detail {obs.sharpness:.0f}, under {limits.min_sharpness:.0f}{why}"
    return None


def fuse_tracks(results: list[CropResult], detector: FaceDetector, bands: Thresholds = Thresholds(),
                video: bool = False) -> tuple[list[FaceTrack], list[Evidence]]:
    """One FaceTrack per tracked face (abstained ones included, with the reason) and its evidence in words."""
    limits = detector.limits
    tracks, evidence = [], []
    for tid in sorted({r.track_id for r in results}):
        mine = [r for r in results if r.track_id == tid]
        reasons = [unjudgeable(r.obs, limits) for r in mine]
        judged = [r for r, why in zip(mine, reasons) if why is None]
        need = MIN_VIDEO_FRAMES if video else 1
        if len(judged) < need:
            why = next((w for w in reasons if w), None) if len(judged) == 0 else \
                f"seen in too few frames to judge ({len(judged)} of at least {need})"
            peak = max(mine, key=lambda r: r.obs.logit)
            tracks.append(FaceTrack(tid, None, peak.obs.box, peak.obs.frame_index, peak.obs.time_s,
                                    [r.obs for r in mine], peak.crop, peak.heatmap, abstained=why))
            evidence.append(Evidence(detector.name, detector.version, None, f"face {tid + 1}: abstained: {why}", tid))
            continue
        peak = max(judged, key=lambda r: r.obs.logit)
        p = detector.calibrate(track_logit([r.obs.logit for r in judged], [r.obs.sharpness for r in judged]))
        tracks.append(FaceTrack(
            track_id=tid, probability=p, box=peak.obs.box, peak_frame=peak.obs.frame_index,
            peak_time_s=peak.obs.time_s, observations=[r.obs for r in mine],
            peak_crop=peak.crop, peak_heatmap=peak.heatmap,
        ))
        where = f"face {tid + 1}" + (f" ({len(judged)} frames judged, median weighted by detail, peak at "
                                     f"{peak.obs.time_s:.1f} s)" if len(mine) > 1 else "")
        evidence.append(Evidence(detector.name, detector.version, p,
                                 f"{where}: {detector.explain(p, peak.heatmap, peak.landmarks_crop, bands)}", tid))
    tracks.sort(key=lambda t: (t.probability is None, -(t.probability or 0.0)))
    return tracks, evidence


def timeline(results: list[CropResult], sampled: list[tuple[int, float]]) -> list[TimelinePoint]:
    """Per analysed frame, the highest face probability (None where no face was seen)."""
    by_frame: dict[int, float] = {}
    for r in results:
        by_frame[r.obs.frame_index] = max(by_frame.get(r.obs.frame_index, 0.0), r.obs.probability)
    return [TimelinePoint(t, i, by_frame.get(i)) for i, t in sampled]


def file_probability(tracks: list[FaceTrack]) -> float | None:
    return max((t.probability for t in tracks if t.probability is not None), default=None)


def summarise(kind: str, probability: float | None, tracks: list[FaceTrack], thresholds: Thresholds,
              frames: int) -> str:
    label = thresholds.label(probability)
    if probability is None:
        where = f"in {frames} analysed frames" if kind == "video" else "in the image"
        if tracks:
            n = len(tracks)
            return (f"{n} face{'s' if n != 1 else ''} found {where}, none that could be judged "
                    f"({tracks[0].abstained}); the face detectors abstained, so nothing was scored.")
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


def apply_provenance(probability: float | None, summary: str, provenance: dict | None) -> tuple[float | None, str]:
    """The file's probability and summary once its own declarations are taken into account (rule in the module
    docstring): only a declaration of AI generation changes the number."""
    findings = (provenance or {}).get("findings") or []
    if not findings:
        return probability, summary
    if provenance.get("declares_ai") and provenance.get("score") is not None:
        return max(probability or 0.0, provenance["score"]), f"{findings[0]} {summary}"
    return probability, f"{summary} {findings[0]}"
