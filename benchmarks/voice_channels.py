"""Real speech through codecs, and our own vocoder copies, as the voice detector judges them: the false alarms a
new voice model must not add, and the in-domain catches it must not lose.

    python benchmarks/voice_channels.py [--models DIR ...] [--utterances 100] [--copies griffin_lim,piper | none]

LibriSpeech test-other (`../shared/data/speech`, 10 speakers none of the voice models trained on) is sent through
each channel (as recorded, MP3 64/32 kbps, Opus 24 kbps), and our own fakes of it as recorded (Griffin-Lim, WORLD and
both HiFi-GAN copies; Piper and Kokoro speech as long as it), written to FLAC and scanned by `deepscreen.scan` with
the voice detector alone. Besides the share flagged, each fake family's EER against the clean real recordings.
Each --models folder (default: the shipped models/) is a complete models folder (DEEPSCREEN_MODELS), scanned in its
own process, so two versions are compared on the same files in one run. `--copies none` measures the codecs' false
alarms alone (making the fakes, Kokoro and Piper most, is what takes the time); `--copies phase_vocoder` adds
the pitch shifting of voice-changer apps (never trained on), and the lab's other families by name.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

CHANNELS = ("clean", "mp3_64k", "mp3_32k", "opus_24k")
# Our own families, the in-domain catches: vocoder copies of each utterance, and text-to-speech as long as it.
COPIES = ("griffin_lim", "world", "hifigan", "hifigan_v1", "piper", "kokoro")
# Made on request (--copies): the rest of the lab's families, e.g. the phase vocoder of voice-changer apps.
MORE_COPIES = ("phase_vocoder", "world_vc", "world_hnm", "lpc")


def make_files(out: Path, n: int, copies: tuple[str, ...] = COPIES) -> list[tuple[str, Path]]:
    from deepscreen.config import SHARED_DIR
    from deepscreen.media.audio import read_audio, write_audio
    from deepscreen.synthesis.voice import codec_roundtrip, resynthesize

    speech = SHARED_DIR / "data/speech"
    with open(speech / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["subset"] == "test-other"][:n]
    files = []
    for r in rows:
        x = read_audio(speech / r["path"]).samples
        stem = Path(r["path"]).stem
        variants = {f"real {c}": (x if c == "clean" else codec_roundtrip(x, c)) for c in CHANNELS}
        rng = np.random.default_rng(zlib.crc32(stem.encode()))
        variants |= {f"fake {g}": resynthesize(g, x, rng) for g in copies}
        for name, y in variants.items():
            path = out / f"{stem}.{name.replace(' ', '_')}.flac"
            write_audio(str(path), y, "flac", "flac")
            files.append((name, path))
    return files


def scan_files(paths: list[str]) -> list[float | None]:
    from deepscreen.scan import Scanner

    scanner = Scanner(detectors=("voice",))
    return [scanner.scan(p).probability for p in paths]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, nargs="*", help="models folders to compare (default: models/)")
    ap.add_argument("--utterances", type=int, default=100)
    ap.add_argument("--copies", default=",".join(COPIES), help="our fake families to make, or none")
    ap.add_argument("--scan", type=Path, help=argparse.SUPPRESS)  # internal: one models folder's process
    args = ap.parse_args()
    if args.scan is not None:  # a JSON list of files in, their probabilities out
        print(json.dumps(scan_files(json.loads(args.scan.read_text()))))
        return
    from deepscreen.config import MODELS_DIR

    folders = args.models or [MODELS_DIR]
    copies = () if args.copies == "none" else tuple(c for c in args.copies.split(",") if c)
    if unknown := set(copies) - set(COPIES + MORE_COPIES):
        ap.error(f"--copies: unknown {', '.join(sorted(unknown))} (known: {', '.join(COPIES + MORE_COPIES)})")
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp), args.utterances, copies)
        listing = Path(tmp) / "files.json"
        listing.write_text(json.dumps([str(p) for _, p in files]))
        probs = {}
        for folder in folders:
            env = os.environ | {"DEEPSCREEN_MODELS": str(folder.resolve())}
            out = subprocess.run([sys.executable, __file__, "--scan", str(listing)], env=env,
                                 check=True, capture_output=True, text=True).stdout
            probs[folder] = json.loads(out.strip().splitlines()[-1])
    names = sorted({n for n, _ in files}, key=lambda n: (not n.startswith("real"), n))
    print(f"{'files':16} {'n':>4} " + " ".join(f"{str(f)[-40:]:>40}" for f in folders))
    for name in names:
        idx = [i for i, (n, _) in enumerate(files) if n == name]
        cells = []
        for folder in folders:
            p = np.array([probs[folder][i] if probs[folder][i] is not None else np.nan for i in idx])
            cell = f"{np.mean(p[~np.isnan(p)] >= 0.5):6.1%} flagged, {np.isnan(p).sum():2d} abst."
            if name.startswith("fake"):
                cell = f"EER {_eer_against_clean(files, probs[folder], name):5.1%}, " + cell
            cells.append(cell)
        print(f"{name:16} {len(idx):4d} " + " ".join(f"{c:>40}" for c in cells))


def _eer_against_clean(files: list[tuple[str, Path]], probs: list[float | None], fake: str) -> float:
    """EER of one fake family against the clean real recordings (abstentions left out)."""
    from deepscreen.training.metrics import eer

    pairs = [(n == fake, p) for (n, _), p in zip(files, probs) if n in (fake, "real clean") and p is not None]
    y, s = np.array([a for a, _ in pairs], float), np.array([b for _, b in pairs], float)
    return eer(y, s)[0]


if __name__ == "__main__":
    main()
