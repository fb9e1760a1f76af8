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
WHISPER_WEIGHTS = "voice_whisper.safetensors"  # optional: a back end on Whisper's frames, fused (voice_whisper.py)
MIN_SPEECH_S = 1.0
CUES = {  # per model: the trace that makes it flag a window, in words (models/voice.md)
    "linear": "vocoder artefacts in the spectrum (most in 4-8 kHz)",
    "wave": "waveform traces of phase rebuilt from a spectrogram",
    "phase": "harmonics whose phase does not glide like a recorded voice's",
    "whisper": "speech texture that a speech recogniser's inner layers find synthetic",
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
    highest of their calibrated scores (`calibrated_max`). With the Whisper branch (`voice_whisper.safetensors`)
    beside them, that score and the Whisper branch's (itself kept above the phase branch's, as it was measured)
    are fused per window by the stack its weights carry (never under the first score, recording-calibrated)."""

    name = "voice"
    modality = "voice"

    def __init__(self, weights=None, wave_weights=None, phase_weights=None, whisper_weights=None):
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
        self.whisper = None
        extra = whisper_weights or path.with_name(WHISPER_WEIGHTS)
        if whisper_weights is not None or extra.exists():
            from .voice_whisper import WhisperBranch

            self.whisper, meta = self._load_weights(extra, WhisperBranch.load,
                                                    "python -m deepscreen.training.voice_whisper_seq ship")
            self._infos.append(self._info)
            versions.append(meta.get("version", "1.0"))
        self.version = max(versions, key=lambda v: tuple(map(int, v.split("."))))  # the newest model's recipe
        # Each branch carries its own calibration; the recording's log-odds then go through the calibration fitted
        # on other people's TTS and real speech of other corpora, where the weights carry one (models/voice.md).
        self.main_recording_platt = tuple(first.get("recording_platt", (1.0, 0.0)))
        # With the Whisper branch, the fused window scores come calibrated (`WhisperBranch.fuse`).
        self.calibration = Calibration() if self.whisper else Calibration(*self.main_recording_platt)

    def models(self) -> list[ModelInfo]:
        return list(self._infos)

    def score_windows(self, windows: np.ndarray) -> np.ndarray:
        """Calibrated log-odds per 2 s window of the spectrogram and phase branches (the Whisper branch reads
        windows in their recording's context: `judge`)."""
        return calibrated_max(self.branches, windows)

    def window_scores(self, per_model: np.ndarray) -> np.ndarray:
        """The detector's window scores from `_score_spans`' rows: the highest of the branches' or, with the
        Whisper branch (the last row), its stack."""
        if self.whisper is None:
            return per_model.max(axis=0)
        main = per_model[:-1].max(axis=0)
        phase = [i for i, b in enumerate(self.branches) if b.frontend == "phase"]
        whisper = np.maximum(per_model[-1], per_model[phase].max(axis=0)) if phase else per_model[-1]
        return self.whisper.fuse(main, self.main_recording_platt, whisper)

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
        scores = self.window_scores(per_model)
        return self.result(scores, spans_s=np.array(spans, np.float64) / RATE,
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
        whisper = _WhisperWindows(self.whisper, starts, keep_from) if self.whisper else None
        if whisper:
            blocks = whisper.fed(blocks)
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
        scored = np.concatenate(scored, axis=1)
        return np.vstack([scored, whisper.finish(blocks)[None]]) if whisper else scored

    def cues(self, per_model: np.ndarray) -> list[str]:
        """What the suspicious windows were flagged for: the models that gave the highest score in at least a
        third of them, most frequent first."""
        flagged = per_model[:, per_model.max(axis=0) >= 0]
        if flagged.shape[1] == 0:
            return []
        frontends = [b.frontend for b in self.branches] + ([self.whisper.frontend] if self.whisper else [])
        counts = np.bincount(flagged.argmax(axis=0), minlength=len(frontends))
        order = [i for i in np.argsort(-counts, kind="stable") if counts[i] * 3 >= flagged.shape[1]]
        return [CUES.get(frontends[i], "vocoder artefacts") for i in order]

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


class _WhisperWindows:
    """The Whisper branch's calibrated window logits, computed as the blocks pass (`fed`): each 30-s chunk is
    encoded when complete, the windows whose frames it completes are scored, and frames no later window needs are
    dropped. `finish` reads what the windows still need (to the end of the recording at most) and scores them."""

    def __init__(self, branch, starts: np.ndarray, keep_from: np.ndarray):
        from .voice_whisper import WINDOW, encoder_frame

        self.branch, self.stream = branch, branch.stream()
        self.starts = encoder_frame(starts)
        self.keep = encoder_frame(keep_from) - WINDOW  # a margin: a window past the end is moved back
        self.done, self.scored = 0, []

    def fed(self, blocks):
        for block in blocks:
            self.stream.feed(block)
            self._score(final=False)
            yield block

    def _score(self, final: bool) -> None:
        k = self.done
        while k < len(self.starts) and (final or self.stream.ready(int(self.starts[k]))):
            k += 1
        if k > self.done:
            self.scored.append(self.branch.logits(self.stream.frames_for(self.starts[self.done:k])))
            self.done = k
        if k < len(self.starts):
            self.stream.drop_before(int(self.keep[k]))

    def finish(self, blocks) -> np.ndarray:
        while self.done < len(self.starts) and next(blocks, None) is not None:
            pass
        self.stream.finish()
        self._score(final=True)
        return np.concatenate(self.scored)
