"""Memory and time of scanning hours of sound: sound is decoded and scored in blocks, so peak memory should not
grow with the duration (goal: a 3-hour file under 1 GB).

  .venv/bin/python benchmarks/bench_long_audio.py [--hours 3] [--kind silence|speech|both] [--format wav|flac]

Writes each file with PyAV a second at a time (the bench itself never holds the recording), then scans it in a
fresh process the way `deepscreen scan` does (default Scanner: all models loaded), and prints that process's
peak RSS and scan time beside a 10-second file of the same kind as the baseline. `speech` loops real
LibriSpeech utterances from ../shared with pauses between them (speech-shaped noise bursts where that data is
absent); `silence` is digital silence with a little dither, which the voice detector abstains on.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

RATE = 16_000


def _speech_source() -> Iterator[np.ndarray]:
    """One second at a time, forever: real utterances with 0.5 s pauses, or noise bursts shaped like syllables."""
    from deepscreen.config import SHARED_DIR
    from deepscreen.media.audio import read_audio

    files = sorted((SHARED_DIR / "data/speech/librispeech").glob("*/*/*.flac"))[:20]
    if files:
        loop = np.concatenate([np.concatenate([read_audio(f).samples, np.zeros(RATE // 2, np.float32)])
                               for f in files])
    else:
        print(f"no speech under {SHARED_DIR}: speech-shaped noise instead", file=sys.stderr)
        rng = np.random.default_rng(0)
        t = np.arange(60 * RATE) / RATE
        envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) * (np.sin(2 * np.pi * 0.2 * t) > -0.3)
        loop = (0.2 * envelope * rng.standard_normal(len(t))).astype(np.float32)
    pos = 0
    while True:
        idx = (pos + np.arange(RATE)) % len(loop)
        yield loop[idx]
        pos += RATE


def _silence_source() -> Iterator[np.ndarray]:
    rng = np.random.default_rng(0)
    while True:
        yield (1e-4 * rng.standard_normal(RATE)).astype(np.float32)


def write_long(path: Path, seconds: int, kind: str, fmt: str) -> None:
    codec = {"wav": "pcm_s16le", "flac": "flac"}[fmt]
    sources = {"speech": _speech_source(), "silence": _silence_source()}
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=RATE)
        stream.layout = "mono"
        for s in range(seconds):
            src = sources["silence" if kind == "silence" or (kind == "both" and s % 1200 >= 600) else "speech"]
            pcm = (np.clip(next(src), -1, 1) * 32767).astype(np.int16)[None]
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate = RATE
            frame.pts = s * RATE
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def child(path: str) -> None:
    """Scan one file in this fresh process and print what it cost."""
    from deepscreen import Scanner

    t = time.perf_counter()
    scanner = Scanner()
    load_s = time.perf_counter() - t
    loaded_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    v = scanner.scan(path)
    scan_s = time.perf_counter() - t
    print(json.dumps({"load_s": load_s, "scan_s": scan_s, "loaded_mb": loaded_rss,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "label": v.label,
                      "speech_s": v.voice.speech_s if v.voice else None, "error": v.error}))


def measure(path: Path) -> dict:
    res = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if res.returncode:
        raise SystemExit(res.stderr)
    return json.loads(res.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--kind", choices=["silence", "speech", "both"], default="both")
    ap.add_argument("--format", choices=["wav", "flac"], default="wav")
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        return child(args.child)
    kinds = ["silence", "speech"] if args.kind == "both" else [args.kind]
    print(f"{'file':<22} {'peak RSS':>9} {'after load':>11} {'scan':>8}  verdict")
    with tempfile.TemporaryDirectory() as d:
        for kind in kinds:
            for seconds in (10, int(args.hours * 3600)):
                path = Path(d) / f"{kind}_{seconds}s.{args.format}"
                t = time.perf_counter()
                write_long(path, seconds, kind, args.format)
                write_s = time.perf_counter() - t
                r = measure(path)
                name = f"{kind} {seconds / 3600:.2f} h" if seconds >= 3600 else f"{kind} {seconds} s"
                print(f"{name:<22} {r['peak_mb']:>6.0f} MB {r['loaded_mb']:>8.0f} MB {r['scan_s']:>6.1f} s  "
                      f"{r['label']}, {r['speech_s'] or 0:.0f} s of speech{' ' + r['error'] if r['error'] else ''}"
                      f"  (file {path.stat().st_size / 2**20:.0f} MiB, written in {write_s:.0f} s)", flush=True)
                path.unlink()


if __name__ == "__main__":
    main()
