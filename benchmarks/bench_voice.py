"""Voice screening speed on this machine, as a table of medians.

  .venv/bin/python benchmarks/bench_voice.py [--repeats 5]

A 60-second MP3 of real speech (LibriSpeech utterances end to end, with pauses) is scanned the way
`deepscreen scan` does it (goal: <= 2 s on 2 cores), with the stages broken down: decode + resample to 16 kHz,
speech finding (silero-vad on onnxruntime), and the voice models on the 2 s windows (together, then
each; where the Whisper branch is shipped, all of them with it as the scan runs them). Baseline: the decode
alone.
Models are loaded once before timing (as a service or batch job does).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from deepscreen import Scanner
from deepscreen.config import SHARED_DIR
from deepscreen.detectors.voice import cut_windows, speech_windows
from deepscreen.detectors.voicenet import calibrated_max
from deepscreen.media.audio import read_audio, write_audio

from _table import print_table, timed  # benchmarks/ is on sys.path when run as a script


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    files = sorted((SHARED_DIR / "data/speech/librispeech").glob("*/*/*.flac"))
    pieces, total = [], 0
    for f in files:
        x = read_audio(f).samples
        pieces += [x, np.zeros(8000, np.float32)]
        total += len(x) + 8000
        if total >= 60 * 16000:
            break
    speech = np.concatenate(pieces)[: 60 * 16000]
    with tempfile.TemporaryDirectory() as d:
        clip = Path(d) / "speech_60s.mp3"
        write_audio(clip, speech, "mp3", "libmp3lame", bit_rate=64000)
        t = time.perf_counter()
        scanner = Scanner()
        load_s = time.perf_counter() - t
        scanner.scan(clip)  # warm-up
        total_s = timed(lambda: scanner.scan(clip), args.repeats)
        decode = timed(lambda: read_audio(clip), args.repeats)
        samples = read_audio(clip).samples
        vad = timed(lambda: scanner.speech(samples), args.repeats)
        segments = scanner.speech(samples)[1]
        spans = speech_windows(segments, len(samples))
        windows = cut_windows(samples, spans)
        cnn = timed(lambda: scanner.voice_detector.score_windows(windows), args.repeats)
        each = [(b.frontend, timed(lambda b=b: calibrated_max([b], windows), args.repeats))
                for b in scanner.voice_detector.branches]
        detector = scanner.voice_detector
        with_whisper = (timed(lambda: detector._score_spans(iter([samples]), spans), args.repeats)
                        if detector.whisper is not None else None)  # it reads 30-s chunks, not the windows alone
        v = scanner.scan(clip)

    med = statistics.median
    rows = [
        ("models load (once per process)", f"{load_s:.2f} s", ""),
        ("60 s MP3 speech: total scan", f"{med(total_s):.2f} s", "goal <= 2 s"),
        ("  decode + resample to 16 kHz (baseline)", f"{med(decode):.2f} s", ""),
        ("  speech finding (silero-vad, onnxruntime)", f"{med(vad):.2f} s", ""),
        (f"  voice models on {len(spans)} windows of 2 s", f"{med(cnn):.2f} s", ""),
        *[(f"    {name} model", f"{med(t):.2f} s", "") for name, t in each],
        *([("  all of them and the Whisper branch (its encoder on 30-s chunks)", f"{med(with_whisper):.2f} s", "")]
          if with_whisper else []),
        ("  ratio scan / decode", f"{med(total_s) / med(decode):.1f}x", ""),
        ("speech found", f"{v.voice.speech_s:.1f} s", ""),
    ]
    print_table(rows, value_width=8)


if __name__ == "__main__":
    main()
