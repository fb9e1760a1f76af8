"""Pitch shifting (the phase vocoder of voice-changer apps, never trained on) as each branch of the voice detector
judges it: which branch hears it, and what the fused score does with that.

    python benchmarks/voice_pitch_shift.py [--utterances 30] [--whisper CANDIDATE.safetensors]

LibriSpeech test-other (10 speakers no voice model trained on) as recorded, through MP3 32 kbps and Opus 24 kbps, and
phase-vocoder copies of each (shifted 2-5 semitones up or down, `synthesis.voice.phase_vocoder`): with the lab's
512-point analysis (the family `own-pitch-shift` a model may have trained on, other speakers), the same through MP3
32 kbps, and with a 2048-point analysis (librosa's default; no model trained on it); plus the real clips of
../shared/data/speech/dev by corpus. `--whisper` scores with a candidate Whisper branch instead of the shipped one.
A recording with under 1 s of speech is counted as abstained (the scanner abstains) and not scored. Per set and
branch: the mean recording log-odds (the scanner's `utterance_logit` over the branch's calibrated window scores)
and the share at or above 0 (= p >= 0.5); then each branch's AUC of the pitch-shifted copies against each real
set; last, what a rule on two branches together would flag (phase + Whisper log-odds >= RULE_OFFSET, read off
these rows, not an operating point: why none was built).
"""

from __future__ import annotations

import argparse
import csv
import zlib
from pathlib import Path

import numpy as np

from deepscreen.config import SHARED_DIR
from deepscreen.detectors.voice import MIN_SPEECH_S, VoiceDetector, speech_windows
from deepscreen.fusion import utterance_logit
from deepscreen.media.audio import read_audio
from deepscreen.media.speech import SpeechFinder
from deepscreen.synthesis.voice import codec_roundtrip, phase_vocoder, resynthesize
from deepscreen.training.metrics import auc

RULE_OFFSET = -2.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utterances", type=int, default=30)
    ap.add_argument("--whisper", type=Path, help="a candidate voice_whisper.safetensors (default: the shipped one)")
    args = ap.parse_args()
    det, finder = VoiceDetector(whisper_weights=args.whisper), SpeechFinder()
    names = [b.frontend for b in det.branches] + (["whisper"] if det.whisper else []) + ["fused (as scanned)"]

    def recording(x: np.ndarray) -> list[float] | None:
        _, segments = finder(x)
        if sum(s.duration_s for s in segments) < MIN_SPEECH_S:  # the scanner abstains: counted, not scored
            return None
        per_model = det._score_spans([x], speech_windows(segments, len(x)))
        return [utterance_logit(r) for r in per_model] + [utterance_logit(det.window_scores(per_model))]

    speech = SHARED_DIR / "data/speech"
    with open(speech / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["subset"] == "test-other"][: args.utterances]
    sets: dict[str, list] = {}
    for r in rows:
        x = read_audio(speech / r["path"]).samples
        rng = np.random.default_rng(zlib.crc32(Path(r["path"]).stem.encode()))
        for name, y in (("real clean", x), ("real MP3 32k", codec_roundtrip(x, "mp3_32k")),
                        ("real Opus 24k", codec_roundtrip(x, "opus_24k")),
                        ("pitch-shifted (phase vocoder)", shifted := resynthesize("phase_vocoder", x, rng)),
                        ("pitch-shifted, MP3 32k", codec_roundtrip(shifted, "mp3_32k")),
                        ("pitch-shifted, 2048-point (held out)", phase_vocoder(x, rng, n_fft=2048))):
            sets.setdefault(name, []).append(recording(y))
    dev = speech / "dev"
    with open(dev / "manifest.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["label"] == "real":
                sets.setdefault(f"dev real {r['system']}", []).append(recording(read_audio(dev / r["file"]).samples))
    table = {k: np.array([s for s in v if s is not None]) for k, v in sets.items()}
    print("| set | n | abstained | " + " | ".join(f"{n}: mean / >= 0" for n in names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for k, v in table.items():
        abstained = sum(s is None for s in sets[k])
        print(f"| {k} | {len(v)} | {abstained} | " + " | ".join(f"{v[:, i].mean():+.2f} / {(v[:, i] >= 0).mean():.0%}"
                                                               for i in range(len(names))) + " |")
    fakes = {k: table.pop(k) for k in list(table) if k.startswith("pitch-shifted")}
    for fake, shifted in fakes.items():
        print(f"\n| AUC, {fake} against | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for k, v in table.items():
            y = np.r_[np.zeros(len(v)), np.ones(len(shifted))]
            print(f"| {k} | " + " | ".join(f"{auc(y, np.r_[v[:, i], shifted[:, i]]):.3f}"
                                          for i in range(len(names))) + " |")
    shifted = fakes["pitch-shifted (phase vocoder)"]
    if "phase" in names and "whisper" in names:
        i, j = names.index("phase"), names.index("whisper")
        print(f"\nphase + whisper >= {RULE_OFFSET}: pitch-shifted "
              f"{np.mean(shifted[:, i] + shifted[:, j] >= RULE_OFFSET):.0%}; "
              + "; ".join(f"{k} {np.mean(v[:, i] + v[:, j] >= RULE_OFFSET):.0%}" for k, v in table.items()))


if __name__ == "__main__":
    main()
