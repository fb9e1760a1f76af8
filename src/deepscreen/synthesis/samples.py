"""Make the demo media the README scans: `python -m deepscreen.synthesis.samples OUT`.

Made from held-out LFW people (never seen in training) in ../shared, so the repository carries no faces:
  real_photo.jpg           an untouched photo
  blended_photo.jpg        the same photo with its face self-blended (a face-swap-like forgery)
  composite_photo.jpg      another person with eyes/nose/mouth regions pasted from an altered copy
  real_clip.mp4            5 s, 640x360 H.264, the face moving across the frame
  swapped_halfway.mp4      the same clip where the face is replaced by its blend from 2.5 s on (see the timeline)
  no_face.png              a picture with no face (the detectors abstain)
  real_speech.flac         8 s of a held-out LibriSpeech speaker, untouched
  converted_voice.mp3      another held-out speaker through a WORLD voice conversion (pitch + formants), as MP3
  dubbed_clip.mp4          real_clip.mp4 with a vocoded (HiFi-GAN) voice as its sound track: face and voice disagree
  tone.wav                 a few musical notes: not speech, the voice detector abstains
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np
from PIL import Image

from ..config import SHARED_DIR
from ..media.audio import add_audio, read_audio, write_audio
from ..training.data import split_of
from ..training.voice_data import manifest
from ..training.voice_data import split_of as speaker_split
from .sbi import self_blend
from .voice import RATE, resynthesize

LFW = SHARED_DIR / "data/faces/lfw"


def _heldout_faces() -> list[np.ndarray]:
    people = sorted(p.name for p in LFW.iterdir() if p.is_dir() and split_of(p.name) == "test")
    picks = [LFW / name / f"{name}_0001.jpg" for name in people[::7]]
    return [np.asarray(Image.open(p).convert("RGB")) for p in picks if p.exists()]


def _heldout_speech(n: int, seconds: float = 8.0) -> list[np.ndarray]:
    rows = [r for r in manifest() if speaker_split(r["speaker"]) == "test" and float(r["duration_s"]) >= seconds]
    return [read_audio(SHARED_DIR / "data/speech" / r["path"]).samples[: int(seconds * RATE)] for r in rows[:n]]


def _background(h: int, w: int, t: float) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    bg = np.stack([80 + 60 * np.sin(x / 90 + t), 100 + 50 * np.cos(y / 70), 120 + 40 * np.sin((x + y) / 150)], -1)
    return bg.astype(np.uint8)


def _write_clip(path: Path, real: np.ndarray, fake: np.ndarray | None, seconds: float = 5.0, fps: int = 25,
                sound: np.ndarray | None = None):
    frames = int(seconds * fps)
    with av.open(str(path), "w") as out:
        audio = None
        if sound is not None:
            audio = out.add_stream("aac", rate=RATE)
            audio.layout = "mono"
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast"}
        for i in range(frames):
            frame = _background(360, 640, i / fps)
            face = fake if fake is not None and i >= frames // 2 else real
            big = np.asarray(Image.fromarray(face).resize((200, 200), Image.BICUBIC))
            x, y = 40 + int(360 * i / frames), 80 + int(10 * np.sin(i / 8))
            frame[y:y + 200, x:x + 200] = big
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if audio is not None:
            add_audio(out, audio, sound)


@contextmanager
def _one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def make_samples(out: Path) -> list[Path]:
    from ..faces.detect import FaceAnalyzer

    out.mkdir(parents=True, exist_ok=True)
    analyzer = FaceAnalyzer(max_faces=1)
    rng = np.random.default_rng(2024)
    # Held-out people whose face the detector finds clearly, in the original and in its forgeries (a blend can
    # shift the colours so far that a borderline detection is lost, which would make a dull demo).
    picked = []
    for face in _heldout_faces():
        found = analyzer(face)
        if not found or found[0].score < 0.8 or found[0].landmarks is None:
            continue
        family = "face" if not picked else "regions"
        fake = self_blend(face, found[0].landmarks, rng, family=family, ratio=1.0).image
        if analyzer(fake) and analyzer(fake)[0].landmarks is not None:
            picked.append((face, fake))
        if len(picked) == 2:
            break
    analyzer.close()
    (first, blended), (_, composite) = picked
    Image.fromarray(first).save(out / "real_photo.jpg", quality=95)
    Image.fromarray(blended).save(out / "blended_photo.jpg", quality=95)
    Image.fromarray(composite).save(out / "composite_photo.jpg", quality=95)
    Image.fromarray(_background(300, 400, 0.0)).save(out / "no_face.png")
    _write_clip(out / "real_clip.mp4", first, None)
    _write_clip(out / "swapped_halfway.mp4", first, blended)

    talk, other = _heldout_speech(2)
    write_audio(out / "real_speech.flac", talk, "flac", "flac")
    with _one_torch_thread():  # a vocoder's sums depend on how many threads split them: the same voice in any process
        converted = resynthesize("world_vc", other, np.random.default_rng(7))
        try:
            # in float64: the float32 vocoder's output follows the CPU's instruction set (see voice.hifigan)
            dub = resynthesize("hifigan", talk[: 5 * RATE], np.random.default_rng(8), exact=True)
        except RuntimeError:  # the HiFi-GAN wheel is a training extra: fall back to the WORLD vocoder
            dub = resynthesize("world", talk[: 5 * RATE], np.random.default_rng(8))
    write_audio(out / "converted_voice.mp3", converted, "mp3", "libmp3lame", bit_rate=64_000)
    _write_clip(out / "dubbed_clip.mp4", first, None, sound=dub)
    notes = [0.25 * np.sin(2 * np.pi * hz * np.arange(RATE) / RATE) * np.hanning(RATE) for hz in (262, 330, 392, 523)]
    write_audio(out / "tone.wav", np.concatenate(notes).astype(np.float32), "wav", "pcm_s16le")
    return sorted(out.iterdir())


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "samples")
    for p in make_samples(target):
        print(p)
