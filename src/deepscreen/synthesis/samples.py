"""Make the demo media the README scans: `python -m deepscreen.synthesis.samples OUT`.

Made from held-out LFW people (never seen in training) in ../shared, so the repository carries no faces:
  real_photo.jpg           an untouched photo
  blended_photo.jpg        the same photo with its face self-blended (a face-swap-like forgery)
  composite_photo.jpg      another person with eyes/nose/mouth regions pasted from an altered copy
  real_clip.mp4            5 s, 640x360 H.264, the face moving across the frame
  swapped_halfway.mp4      the same clip where the face is replaced by its blend from 2.5 s on (see the timeline)
  no_face.png              a picture with no face (the detectors abstain)
"""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
from PIL import Image

from ..config import SHARED_DIR
from ..training.data import split_of
from .sbi import self_blend

LFW = SHARED_DIR / "data/faces/lfw"


def _heldout_faces(n: int) -> list[np.ndarray]:
    people = sorted(p.name for p in LFW.iterdir() if p.is_dir() and split_of(p.name) == "test")
    picks = [LFW / name / f"{name}_0001.jpg" for name in people[:: max(1, len(people) // (n + 1))][:n]]
    return [np.asarray(Image.open(p).convert("RGB")) for p in picks]


def _background(h: int, w: int, t: float) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    bg = np.stack([80 + 60 * np.sin(x / 90 + t), 100 + 50 * np.cos(y / 70), 120 + 40 * np.sin((x + y) / 150)], -1)
    return bg.astype(np.uint8)


def _write_clip(path: Path, real: np.ndarray, fake: np.ndarray | None, seconds: float = 5.0, fps: int = 25):
    frames = int(seconds * fps)
    with av.open(str(path), "w") as out:
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


def make_samples(out: Path) -> list[Path]:
    from ..faces.detect import FaceAnalyzer

    out.mkdir(parents=True, exist_ok=True)
    analyzer = FaceAnalyzer(max_faces=1)
    rng = np.random.default_rng(2024)
    first, second = _heldout_faces(2)
    lms1, lms2 = analyzer(first)[0].landmarks, analyzer(second)[0].landmarks
    analyzer.close()
    blended = self_blend(first, lms1, rng, family="face", ratio=1.0).image
    composite = self_blend(second, lms2, rng, family="regions", ratio=1.0).image
    Image.fromarray(first).save(out / "real_photo.jpg", quality=95)
    Image.fromarray(blended).save(out / "blended_photo.jpg", quality=95)
    Image.fromarray(composite).save(out / "composite_photo.jpg", quality=95)
    Image.fromarray(_background(300, 400, 0.0)).save(out / "no_face.png")
    _write_clip(out / "real_clip.mp4", first, None)
    _write_clip(out / "swapped_halfway.mp4", first, blended)
    return sorted(out.iterdir())


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "samples")
    for p in make_samples(target):
        print(p)
