"""The voice detector: VoiceNet trained on vocoder copies of real speech (synthesis/voice.py, models/voice.md).

It scores only speech: 2-second windows, 1 s apart, inside the segments silero-vad marks as speech. Music, noise
and silence are out of its scope: with less than a second of speech it abstains instead of guessing.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..config import MODELS_DIR, Thresholds
from ..fusion import utterance_logit  # noqa: F401  (the lab scores recordings with the scanner's rule)
from ..media.speech import SpeechSegment
from ..verdict import ModelInfo, VoiceAnalysis, VoiceSegment, percent
from . import Calibration, Detector, DetectorResult, register
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
# Windows scored per network call when cutting from blocks: a multiple of calibrated_logits' chunk of 32, so
# the batches match those of one whole array (same scores to the bit), and ~8 MB of windows at a time.
WINDOW_BATCH = 64


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
        first = meta
        self.branches, self._infos, versions = [Branch.of(model, meta)], [self._info], [meta.get("version", "1.0")]
        for named, default in ((wave_weights, WAVE_WEIGHTS), (phase_weights, PHASE_WEIGHTS)):
            extra = named or path.with_name(default)
            if named is not None or extra.exists():  # asked for by name: a missing file is an error
                model, meta = self._load_weights(extra, load_weights, "deepscreen train-voice --ensemble")
                self.branches.append(Branch.of(model, meta))
                self._infos.append(self._info)
                versions.append(meta.get("version", "1.0"))
        self.version = max(versions, key=lambda v: tuple(map(int, v.split("."))))  # the newest model's recipe
        # Each branch carries its own calibration; the recording's log-odds then go through the calibration fitted
        # on other people's TTS and real speech of other corpora, where the weights carry one (models/voice.md).
        self.calibration = Calibration(*first.get("recording_platt", (1.0, 0.0)))

    def models(self) -> list[ModelInfo]:
        return list(self._infos)

    def score_windows(self, windows: np.ndarray) -> np.ndarray:
        """Calibrated log-odds per 2 s window."""
        return calibrated_max(self.branches, windows)

    def judge(self, blocks: Iterable[np.ndarray], n_samples: int, segments: list[SpeechSegment]) -> DetectorResult:
        """Raw (calibrated per model, the highest kept) log-odds of the 2 s windows over the speech `segments`
        (media.speech.SpeechFinder) of 16 kHz mono audio that arrives in `blocks` (media.audio.AudioReader.blocks),
        `n_samples` in all: only the windows being scored are held, so memory does not grow with the duration. The
        blocks are not read at all when the detector abstains (under MIN_SPEECH_S of speech)."""
        speech_s = sum(s.duration_s for s in segments)
        if speech_s < MIN_SPEECH_S:
            what = "no speech found" if speech_s == 0 else f"only {speech_s:.1f} s of speech"
            return self.result(np.zeros(0), spans_s=np.zeros((0, 2)),
                               abstained=f"{what} (music, noise and silence are out of scope)")
        spans = speech_windows(segments, n_samples)
        per_model = self._score_spans(blocks, spans)
        return self.result(per_model.max(axis=0), spans_s=np.array(spans, np.float64) / RATE,
                           cues=self.cues(per_model))

    def analyse(self, samples: np.ndarray, segments: list[SpeechSegment], bands: Thresholds = Thresholds()
                ) -> VoiceAnalysis:
        """The voice part of a verdict for 16 kHz mono audio held whole (for the lab and tests; the scan core
        goes through `judge` and fusion)."""
        return self.analyse_blocks([samples], len(samples), segments, bands)

    def analyse_blocks(self, blocks: Iterable[np.ndarray], n_samples: int, segments: list[SpeechSegment],
                       bands: Thresholds = Thresholds()) -> VoiceAnalysis:
        from ..fusion import voice_analysis
        from ..prepared import Sound

        return voice_analysis(self.judge(blocks, n_samples, segments), Sound(n_samples, segments), bands)

    def _score_spans(self, blocks: Iterable[np.ndarray], spans: list[tuple[int, int]]) -> np.ndarray:
        """(models, windows) calibrated logits of the spans, cut from the blocks as they pass and scored
        WINDOW_BATCH at a time, in the spans' order (so the network sees the same batches as for one array)."""
        starts = np.array([a for a, _ in spans])
        keep_from = np.minimum.accumulate(starts[::-1])[::-1]  # no later window starts before this sample
        blocks = iter(blocks)
        buf, buf_start = np.zeros(0, np.float32), 0  # samples [buf_start, buf_start + len(buf)) of the recording
        batch, scored = [], []
        for k, (a, b) in enumerate(spans):
            while buf_start + len(buf) < b:
                block = next(blocks, None)
                if block is None:  # fewer samples than n_samples said: the window is zero-padded
                    break
                buf = np.concatenate([buf, block])
                cut = int(min(max(0, keep_from[k] - buf_start), len(buf)))
                buf, buf_start = buf[cut:], buf_start + cut
            window = buf[a - buf_start:b - buf_start]
            batch.append(np.pad(window, (0, _WIN - len(window))))
            if len(batch) == WINDOW_BATCH or k == len(spans) - 1:
                scored.append(calibrated_logits(self.branches, np.stack(batch).astype(np.float32)))
                batch = []
            if k + 1 < len(spans):
                cut = int(min(max(0, keep_from[k + 1] - buf_start), len(buf)))
                buf, buf_start = buf[cut:], buf_start + cut
        return np.concatenate(scored, axis=1)

    def cues(self, per_model: np.ndarray) -> list[str]:
        """What the suspicious windows were flagged for: the models that gave the highest score in at least a
        third of them, most frequent first."""
        flagged = per_model[:, per_model.max(axis=0) >= 0]
        if flagged.shape[1] == 0:
            return []
        counts = np.bincount(flagged.argmax(axis=0), minlength=len(self.branches))
        order = [i for i in np.argsort(-counts, kind="stable") if counts[i] * 3 >= flagged.shape[1]]
        return [CUES.get(self.branches[i].frontend, "vocoder artefacts") for i in order]

    @staticmethod
    def explain(probability: float, bands: Thresholds = Thresholds(), segments: list[VoiceSegment] = (),
                speech_s: float = 0.0, cues: list[str] | None = None) -> str:
        flagged = [s for s in segments if s.probability >= bands.manipulated]
        if probability >= bands.manipulated:
            where = ", ".join(f"{s.start_s:.1f}-{s.end_s:.1f} s" for s in flagged[:4]) or "across the speech"
            return (f"the voice sounds synthetic ({percent(probability)}): "
                    f"{'; '.join(cues or ['vocoder artefacts in the spectrum or waveform'])} at {where}")
        if probability >= bands.suspicious:
            return f"weak signs of a synthetic voice ({percent(probability)}) in {speech_s:.0f} s of speech"
        return f"the voice sounds natural ({percent(probability)} synthetic) over {speech_s:.0f} s of speech"
