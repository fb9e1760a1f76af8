"""Training data for the voice detector: real LibriSpeech utterances and their vocoder copies, split by speaker.

Each generator's copies are made once and cached as one .npz per generator (the slow ones, HiFi-GAN and LPC, take
minutes), so training and the leave-one-generator-out runs reuse them, and an interrupted build resumes.
"""

from __future__ import annotations

import csv
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import SHARED_DIR
from ..media.audio import read_audio
from ..synthesis.voice import GENERATORS, UNSEEN, degrade, resynthesize

log = logging.getLogger(__name__)

SPEECH_DIR = SHARED_DIR / "data" / "speech"
MAX_FAKE_S = 8.0  # of each utterance, per generator: keeps HiFi-GAN (RTF ~0.5 here) to minutes, not an hour


def split_of(speaker: str) -> str:
    """80/10/10 train/val/test by speaker, stable across machines and runs (crc32, not Python's hash)."""
    h = zlib.crc32(f"speaker:{speaker}".encode()) % 10
    return "train" if h < 8 else ("val" if h == 8 else "test")


@dataclass
class Clips:
    """Utterances of one source (real or a generator) packed into one array."""

    audio: np.ndarray  # float32, all clips end to end
    offsets: np.ndarray  # (n+1,) start of each clip
    speakers: np.ndarray  # (n,) str
    names: np.ndarray  # (n,) utterance ids

    def __len__(self) -> int:
        return len(self.speakers)

    def clip(self, i: int) -> np.ndarray:
        return self.audio[self.offsets[i]:self.offsets[i + 1]]

    def subset(self, split: str) -> list[int]:
        return [i for i, s in enumerate(self.speakers) if split_of(str(s)) == split]


def manifest(speech_dir: Path = SPEECH_DIR) -> list[dict]:
    with open(speech_dir / "manifest.csv", newline="") as f:
        return sorted(csv.DictReader(f), key=lambda r: r["path"])


def _pack(clips: list[np.ndarray], speakers: list[str], names: list[str]) -> Clips:
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in clips])]).astype(np.int64)
    return Clips(np.concatenate(clips).astype(np.float32), offsets, np.array(speakers), np.array(names))


def _save(path: Path, c: Clips) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, audio=c.audio, offsets=c.offsets, speakers=c.speakers, names=c.names)
    tmp.replace(path)


def load_clips(path: Path) -> Clips:
    z = np.load(path)
    return Clips(z["audio"], z["offsets"], z["speakers"], z["names"])


def build(cache: Path, generators: list[str] | None = None, speech_dir: Path = SPEECH_DIR,
          progress=None) -> dict[str, Clips]:
    """{'real': ..., generator: ...}, from the cache or made now (default: the training and the unseen ones)."""
    cache.mkdir(parents=True, exist_ok=True)
    real_path = cache / "real.npz"
    if not real_path.exists():  # the corpus is read only to make the cache
        rows = manifest(speech_dir)
        audio = [read_audio(speech_dir / r["path"]).samples for r in rows]
        _save(real_path, _pack(audio, [r["speaker"] for r in rows], [r["utterance"] for r in rows]))
    out = {"real": load_clips(real_path)}
    real = out["real"]
    for name in generators or [*GENERATORS, *UNSEEN]:
        path = cache / f"{name}.npz"
        if not path.exists():
            fakes = []
            for i in range(len(real)):
                # A generator-specific seed: the same utterance gets different random choices per generator.
                rng = np.random.default_rng(zlib.crc32(f"{name}:{real.names[i]}".encode()))
                x = real.clip(i)[: int(MAX_FAKE_S * 16000)]
                fakes.append(resynthesize(name, x, rng))
                if progress:
                    progress(name, i + 1, len(real))
            _save(path, _pack(fakes, list(real.speakers), list(real.names)))
            log.info("made %s copies of %d utterances", name, len(real))
        out[name] = load_clips(path)
    return out


def build_channels(cache: Path, name: str, clips: Clips, variants: int = 3, progress=None) -> Clips:
    """`variants` copies of each clip (first 8 s) through random channels (codec, noise, band, gain), made once.

    Degrading on the fly costs more than the training step itself on 2 cores (a codec round trip is ~30 ms);
    a cached pool keeps every run (and each leave-one-out run) fast. Clip i, variant v is entry i*variants+v."""
    path = cache / f"{name}.channels.npz"
    if not path.exists():
        out, speakers, names = [], [], []
        for i in range(len(clips)):
            rng = np.random.default_rng(zlib.crc32(f"channel:{name}:{clips.names[i]}".encode()))
            x = clips.clip(i)[: int(MAX_FAKE_S * 16000)]
            for _ in range(variants):
                out.append(degrade(x, rng))
                speakers.append(str(clips.speakers[i]))
                names.append(str(clips.names[i]))
            if progress:
                progress(f"{name} channels", i + 1, len(clips))
        _save(path, _pack(out, speakers, names))
    return load_clips(path)


if __name__ == "__main__":  # python -m deepscreen.training.voice_data [CACHE [NAME...]]: build it, with progress
    import sys
    import time

    start = time.time()

    def show(name, i, n):
        if i % 25 == 0 or i == n:
            print(f"{time.time() - start:7.0f}s {name} {i}/{n}", flush=True)

    # The default is where `deepscreen train-voice` looks (WORK/clips), so a cache built here is the one it uses.
    cache = Path(sys.argv[1] if len(sys.argv) > 1 else ".cache/voice/clips")
    names = sys.argv[2:] or ["real", *GENERATORS]
    data = build(cache, [n for n in names if n != "real"], progress=show)
    for n in names:
        build_channels(cache, n, data[n], progress=show)
