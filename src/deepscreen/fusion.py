"""The verdict builder: detector results (raw scores per unit, detectors.DetectorResult) and what `prepare`
found in the file (prepared.Prepared) become one calibrated, explained, labelled Verdict. Nothing else builds one.

Rules (docs/verdicts.md explains them to users):
  - Frames where the face is too small or too soft for the detector to judge at its measured rate (limits read
    from its weights, `FaceLimits`) are not scored; a track left with none abstains and says why.
  - A face track's score is the weighted median of its frames' logits, weighted by each crop's detail
    (sharpness, saturating), then calibrated. A swap is on the face in most frames, so its median stays high; a
    real face's score jumps from frame to frame with blur, pose and compression, and the median ignores those
    jumps where the mean of the most suspicious frames (the rule before v2.0) was led by them (models/face_blend.md).
    In a video a face must be judged in at least MIN_VIDEO_FRAMES frames: faces glimpsed once are not convicted.
  - A recording's score is the mean of its most suspicious half of 2 s windows (`utterance_logit`), calibrated: a
    clip where only some sentences were cloned still stands out, while one odd window does not decide alone.
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

import numpy as np

from .config import Thresholds
from .detectors import DetectorResult, FaceLimits
from .media.speech import SpeechSegment
from .prepared import FaceCrop, Prepared
from .verdict import (Evidence, FaceObservation, FaceTrack, TimelinePoint, Verdict, VoiceAnalysis, VoicePoint,
                      VoiceSegment, percent)

MIN_VIDEO_FRAMES = 3  # judged frames a video face track needs (of 16 analysed by default)
SHARPNESS_CAP = 200.0  # beyond this much detail a frame is not more trustworthy: weights saturate here


def build_verdict(prepared: Prepared, face: DetectorResult | None = None, voice: DetectorResult | None = None,
                  provenance: tuple[Evidence | None, dict] | None = None, bands: Thresholds = Thresholds(),
                  keep_crops: bool = True) -> Verdict:
    """The verdict of a prepared file from its detectors' results: `face` (scores aligned with prepared.crops),
    `voice` (over prepared.sound), `provenance` (the provenance reader's evidence and findings). Calibrates with
    each result's Calibration, combines, explains and labels with `bands`, and records `bands` in the Verdict."""
    info, evidence = prepared.info, []
    voice_part = voice_analysis(voice, prepared.sound, bands) if voice is not None else None
    if info.kind == "audio":
        probability = voice_part.probability
        summary = summarise_voice(probability, voice_part, bands)
        evidence.append(Evidence(voice.detector, voice.version, probability, voice_part.explanation))
        tracks, timeline, cross, models = [], [], None, voice.models
        media = {**info.to_dict(), "speech_s": round(voice_part.speech_s, 2)}
    else:
        observations = face_observations(prepared.crops, face)
        tracks, evidence = fuse_tracks(prepared.crops, observations, face, bands, video=info.kind == "video")
        if not keep_crops:
            for t in tracks:
                t.peak_crop = t.peak_heatmap = None
        face_p = file_probability(tracks)
        summary = summarise(info.kind, face_p, tracks, bands, len(prepared.sampled))
        if voice_part is not None:
            evidence.append(Evidence(voice.detector, voice.version, voice_part.probability,
                                     f"sound track: {voice_part.explanation}"))
            if voice_part.probability is not None:
                summary += " Voice: " + summarise_voice(voice_part.probability, voice_part, bands)
        probability = combine(face_p, voice_part)
        timeline = face_timeline(observations, prepared.sampled) if info.kind == "video" else []
        cross = cross_check(face_p, voice_part, bands)
        models = face.models + (voice.models if voice is not None else [])
        media = {**info.to_dict(), "frames_analysed": len(prepared.sampled), "faces_found": len(prepared.crops)}
    found = None
    if provenance is not None:
        found_evidence, found = provenance
        if found_evidence:  # no provenance is no evidence: nothing is added when nothing was found
            evidence.append(found_evidence)
    probability, summary = apply_provenance(probability, summary, found)
    return Verdict(path=str(prepared.path), sha256=prepared.sha256, kind=info.kind, probability=probability,
                   label=bands.label(probability), summary=summary, faces=tracks, timeline=timeline,
                   evidence=evidence, models=list(models), media=media, voice=voice_part, cross_check=cross,
                   provenance=found, thresholds=bands)


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


def utterance_logit(window_logits: np.ndarray) -> float:
    """A recording's (or a speech segment's) score: the mean of its most suspicious half of windows."""
    z = np.sort(np.asarray(window_logits, np.float64))[::-1]
    return float(z[: max(1, (len(z) + 1) // 2)].mean())


def unjudgeable(obs: FaceObservation, limits: FaceLimits) -> str | None:
    """Why this face cannot be judged at the detector's measured rate, or None if it can."""
    width = obs.box[2] - obs.box[0]
    why = f", {limits.note.strip('() ')}" if limits.note.strip("() ") else ""
    if width < limits.min_width:
        return f"too small to judge: {width} px wide, under {limits.min_width:.0f} px{why}"
    if obs.sharpness is not None and obs.sharpness < limits.min_sharpness:
        return f"too soft or compressed to judge: detail {obs.sharpness:.0f}, under {limits.min_sharpness:.0f}{why}"
    return None


def face_observations(crops: list[FaceCrop], face: DetectorResult) -> list[FaceObservation]:
    """Each crop with its raw score and calibrated probability."""
    return [FaceObservation(c.frame_index, c.time_s, c.box, face.probability(float(z)), float(z), c.sharpness)
            for c, z in zip(crops, face.scores)]


def fuse_tracks(crops: list[FaceCrop], observations: list[FaceObservation], face: DetectorResult,
                bands: Thresholds = Thresholds(), video: bool = False) -> tuple[list[FaceTrack], list[Evidence]]:
    """One FaceTrack per tracked face (abstained ones included, with the reason) and its evidence in words; the
    face detector abstains in one Evidence when there is no face at all."""
    if not crops:
        return [], [Evidence(face.detector, face.version, None, f"abstained: {face.abstained or 'no face found'}")]
    tracks, evidence = [], []
    for tid in sorted({c.track_id for c in crops}):
        mine = [k for k, c in enumerate(crops) if c.track_id == tid]
        reasons = [unjudgeable(observations[k], face.limits) for k in mine]
        judged = [k for k, why in zip(mine, reasons) if why is None]
        need = MIN_VIDEO_FRAMES if video else 1
        if len(judged) < need:
            why = next((w for w in reasons if w), None) if len(judged) == 0 else \
                f"seen in too few frames to judge ({len(judged)} of at least {need})"
            tracks.append(_track(tid, None, max(mine, key=lambda k: observations[k].logit), mine, crops,
                                 observations, face, abstained=why))
            evidence.append(Evidence(face.detector, face.version, None, f"face {tid + 1}: abstained: {why}", tid))
            continue
        peak = max(judged, key=lambda k: observations[k].logit)
        p = face.probability(track_logit([observations[k].logit for k in judged],
                                         [observations[k].sharpness for k in judged]))
        tracks.append(_track(tid, p, peak, mine, crops, observations, face))
        at = observations[peak]
        where = f"face {tid + 1}" + (f" ({len(judged)} frames judged, median weighted by detail, peak at "
                                     f"{at.time_s:.1f} s)" if len(mine) > 1 else "")
        words = face.explain(p, bands, heatmap=_map(face, peak), landmarks_crop=crops[peak].landmarks)
        evidence.append(Evidence(face.detector, face.version, p, f"{where}: {words}", tid))
    tracks.sort(key=lambda t: (t.probability is None, -(t.probability or 0.0)))
    return tracks, evidence


def _map(face: DetectorResult, k: int):
    return face.maps[k] if face.maps is not None else None


def _track(tid, p, peak, mine, crops, observations, face, abstained=None) -> FaceTrack:
    at = observations[peak]
    return FaceTrack(tid, p, at.box, at.frame_index, at.time_s, [observations[k] for k in mine],
                     crops[peak].crop, _map(face, peak), abstained=abstained)


def face_timeline(observations: list[FaceObservation], sampled: list[tuple[int, float]]) -> list[TimelinePoint]:
    """Per analysed frame, the highest face probability (None where no face was seen)."""
    by_frame: dict[int, float] = {}
    for o in observations:
        by_frame[o.frame_index] = max(by_frame.get(o.frame_index, 0.0), o.probability)
    return [TimelinePoint(t, i, by_frame.get(i)) for i, t in sampled]


def voice_analysis(voice: DetectorResult, sound, bands: Thresholds = Thresholds()) -> VoiceAnalysis:
    """The voice part of a verdict: the recording's probability, each speech segment's, one point per second, and
    the words; an abstention says why. `sound`: prepared.Sound (its segments and length)."""
    segments: list[SpeechSegment] = sound.segments if sound is not None else []
    duration = sound.duration_s if sound is not None else 0.0
    speech_s = sum(s.duration_s for s in segments)
    if voice.abstained is not None:
        return VoiceAnalysis(None, speech_s, duration, [], [], f"abstained: {voice.abstained}")
    z, starts, ends = voice.scores, voice.spans_s[:, 0], voice.spans_s[:, 1]
    probability = voice.probability(utterance_logit(z))
    # Which windows overlap a segment or a second, as arrays: a three-hour recording has ~10^4 of each.
    seg_out = [VoiceSegment(s.start_s, s.end_s, voice.probability(utterance_logit(z[(starts < s.end_s) &
                                                                                     (ends > s.start_s)])))
               for s in segments]
    seg_a, seg_b = np.array([(s.start_s, s.end_s) for s in segments]).T
    timeline = []
    for sec in range(int(np.ceil(duration))):  # per second: mean logit of the windows that cover it
        cover = z[(starts < sec + 1) & (ends > sec)]
        in_speech = bool(np.any((seg_a < sec + 1) & (seg_b > sec)))
        timeline.append(VoicePoint(float(sec), voice.probability(float(np.mean(cover))) if cover.size and in_speech
                                   else None))
    words = voice.explain(probability, bands, segments=seg_out, speech_s=speech_s, cues=voice.cues)
    return VoiceAnalysis(probability, speech_s, duration, seg_out, timeline, words)


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
