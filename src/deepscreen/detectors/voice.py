"""The voice detector: VoiceNet trained on vocoder copies of real speech (synthesis/voice.py, models/voice.md).

It scores only speech: 2-second windows, 1 s apart, inside the segments silero-vad marks as speech. Music, noise
and silence are out of its scope: with less than a second of speech it abstains instead of guessing.
"""

from __future__ import annotations

import numpy as np

from ..config import MODELS_DIR
from ..media.speech import SpeechSegment
from ..verdict import ModelInfo, VoiceAnalysis, VoicePoint, VoiceSegment, percent
from . import Detector, register
from .voicenet import RATE, WINDOW_S, Branch, calibrated_logits, calibrated_max, load_weights

WEIGHTS = "voice.safetensors"
WAVE_WEIGHTS = "voice_wave.safetensors"  # optional second model
PHASE_WEIGHTS = "voice_phase.safetensors"  # optional third: real speech's phase statistics (PhaseNovelty)
MIN_SPEECH_S = 1.0
CUES = {  # per model: the trace that makes it flag a window, in words (models/voice.md)
    "linear": "vocoder artefacts in the spectrum (most in 4-8 kHz)",
    "wave": "waveform traces of phase rebuilt from a spectrogram",
    "phase": "harmonics whose phase does not glide like a recorded voice's",
}
_WIN = int(WINDOW_S * RATE)


def utterance_logit(window_logits: np.ndarray) -> float:
    """A recording's score: the mean of its most suspicious half of windows. A clip where only some sentences
    were cloned (spliced into real speech) still stands out, while one odd window does not decide alone."""
    z = np.sort(np.asarray(window_logits, np.float64))[::-1]
    return float(z[: max(1, (len(z) + 1) // 2)].mean())


def speech_windows(segments: list[SpeechSegment], n_samples: int, hop_s: float = 1.0) -> list[tuple[int, int]]:
    """(start, end) sample ranges of 2 s windows covering each segment; a short segment gets one window centred
    on it (padded with its surroundings), a long one windows every `hop_s` with the last one flush with its end."""
    out = []
    for seg in segments:
        a, b = int(seg.start_s * RATE), min(n_samples, int(seg.end_s * RATE))
        if b - a <= _WIN:
            mid = (a + b) // 2
            s = min(max(0, mid - _WIN // 2), max(0, n_samples - _WIN))
            out.append((s, min(n_samples, s + _WIN)))
            continue
        starts = list(range(a, b - _WIN + 1, int(hop_s * RATE)))
        if starts[-1] != b - _WIN:
            starts.append(b - _WIN)
        out += [(s, s + _WIN) for s in starts]
    return out


def cut_windows(samples: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """(N, 2 s) float32 windows for the spans; one cut short by the end of the recording is zero-padded."""
    return np.stack([np.pad(samples[a:b], (0, _WIN - (b - a))) for a, b in spans]).astype(np.float32)


@register
class VoiceDetector(Detector):
    """The filterbank model (`voice.safetensors`) and, when their files are beside it, the waveform model
    (`voice_wave.safetensors`) and the phase novelty model (`voice_phase.safetensors`): each window gets the
    highest of their calibrated scores (`calibrated_max`)."""

    name = "voice"
    modality = "voice"

    def __init__(self, weights=None, wave_weights=None, phase_weights=None):
        path = weights or MODELS_DIR / WEIGHTS
        model, meta = self._load_weights(path, load_weights, "deepscreen train-voice")
        self.branches, self._infos, versions = [Branch.of(model, meta)], [self._info], [meta.get("version", "1.0")]
        for named, default in ((wave_weights, WAVE_WEIGHTS), (phase_weights, PHASE_WEIGHTS)):
            extra = named or path.with_name(default)
            if named is not None or extra.exists():  # asked for by name: a missing file is an error
                model, meta = self._load_weights(extra, load_weights, "deepscreen train-voice --ensemble")
                self.branches.append(Branch.of(model, meta))
                self._infos.append(self._info)
                versions.append(meta.get("version", "1.0"))
        self.version = max(versions, key=lambda v: tuple(map(int, v.split("."))))  # the newest model's recipe
        self.a, self.b = 1.0, 0.0  # each branch carries its own calibration

    def models(self) -> list[ModelInfo]:
        return list(self._infos)

    def score_windows(self, windows: np.ndarray) -> np.ndarray:
        """Calibrated log-odds per 2 s window."""
        return calibrated_max(self.branches, windows)

    def analyse(self, samples: np.ndarray, segments: list[SpeechSegment]) -> VoiceAnalysis:
        """Score the speech in 16 kHz mono audio; `segments` come from media.speech.SpeechFinder."""
        duration = len(samples) / RATE
        speech_s = sum(s.duration_s for s in segments)
        if speech_s < MIN_SPEECH_S:
            what = "no speech found" if speech_s == 0 else f"only {speech_s:.1f} s of speech"
            return VoiceAnalysis(None, speech_s, duration, [], [],
                                 f"abstained: {what} (music, noise and silence are out of scope)")
        spans = speech_windows(segments, len(samples))
        per_model = calibrated_logits(self.branches, cut_windows(samples, spans))
        logits = per_model.max(axis=0)  # = score_windows
        probability = self.calibrate(utterance_logit(logits))

        seg_out = []
        for seg in segments:
            inside = [z for (a, b), z in zip(spans, logits) if a < seg.end_s * RATE and b > seg.start_s * RATE]
            seg_out.append(VoiceSegment(seg.start_s, seg.end_s, self.calibrate(utterance_logit(inside))))
        timeline = []
        for sec in range(int(np.ceil(duration))):  # per second: mean logit of the windows that cover it
            cover = [z for (a, b), z in zip(spans, logits) if a < (sec + 1) * RATE and b > sec * RATE]
            in_speech = any(s.start_s < sec + 1 and s.end_s > sec for s in segments)
            p = self.calibrate(float(np.mean(cover))) if cover and in_speech else None
            timeline.append(VoicePoint(float(sec), p))
        return VoiceAnalysis(probability, speech_s, duration, seg_out, timeline,
                             self.explain(probability, seg_out, speech_s, self.cues(per_model)))

    def cues(self, per_model: np.ndarray) -> list[str]:
        """What the suspicious windows were flagged for: the models that gave the highest score in at least a
        third of them, most frequent first."""
        flagged = per_model[:, per_model.max(axis=0) >= 0]
        if flagged.shape[1] == 0:
            return []
        counts = np.bincount(flagged.argmax(axis=0), minlength=len(self.branches))
        order = [i for i in np.argsort(-counts, kind="stable") if counts[i] * 3 >= flagged.shape[1]]
        return [CUES.get(self.branches[i].frontend, "vocoder artefacts") for i in order]

    def explain(self, probability: float, segments: list[VoiceSegment], speech_s: float,
                cues: list[str] | None = None) -> str:
        flagged = [s for s in segments if s.probability >= 0.5]
        if probability >= 0.5:
            where = ", ".join(f"{s.start_s:.1f}-{s.end_s:.1f} s" for s in flagged[:4]) or "across the speech"
            return (f"the voice sounds synthetic ({percent(probability)}): "
                    f"{'; '.join(cues or ['vocoder artefacts in the spectrum or waveform'])} at {where}")
        if probability >= 0.25:
            return f"weak signs of a synthetic voice ({percent(probability)}) in {speech_s:.0f} s of speech"
        return f"the voice sounds natural ({percent(probability)} synthetic) over {speech_s:.0f} s of speech"
