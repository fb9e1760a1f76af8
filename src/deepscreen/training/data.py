"""Training data: real LFW faces and their self-blended forgeries, split by person.

Landmarks are found once with the same FaceAnalyzer the scanner uses and cached, so every epoch only pays for
blending. The split is by person (a stable hash of the folder name): no identity is in two splits.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..faces.align import CROP_SIZE, align_face
from ..synthesis.sbi import boundary, degrade, donor_blend, grade, jpeg_roundtrip, self_blend

MAP_SIZE = CROP_SIZE // 16  # the boundary head's resolution


def split_of(person: str) -> str:
    """'train' (80 %), 'val' (10 %: early stopping + calibration) or 'test' (10 %: reported scores)."""
    bucket = zlib.crc32(person.encode()) % 100
    return "train" if bucket < 80 else "val" if bucket < 90 else "test"


@dataclass
class FaceSet:
    paths: list[str]  # relative to the data root
    landmarks: np.ndarray  # (N, 468, 2) float32
    root: Path

    def split(self, name: str) -> "FaceSet":
        keep = [i for i, p in enumerate(self.paths) if split_of(p.split("/")[0]) == name]
        return FaceSet([self.paths[i] for i in keep], self.landmarks[keep], self.root)

    def image(self, i: int) -> np.ndarray:
        return np.asarray(Image.open(self.root / self.paths[i]).convert("RGB"))

    def __len__(self) -> int:
        return len(self.paths)


def load_faceset(root: Path, cache: Path, progress=None) -> FaceSet:
    """Landmarks of every image under root/<person>/*.jpg; images where no face is found are skipped."""
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        return FaceSet(list(z["paths"]), z["landmarks"], root)
    from ..faces.detect import FaceAnalyzer

    analyzer = FaceAnalyzer(max_faces=1)
    files = sorted(p for p in root.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    paths, lms = [], []
    for n, f in enumerate(files):
        faces = analyzer(np.asarray(Image.open(f).convert("RGB")))
        if faces and faces[0].landmarks is not None:
            paths.append(f.relative_to(root).as_posix())
            lms.append(faces[0].landmarks)
        if progress and n % 200 == 0:
            progress(n, len(files))
    analyzer.close()
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, paths=np.array(paths), landmarks=np.stack(lms).astype(np.float32))
    return FaceSet(paths, np.stack(lms).astype(np.float32), root)


def make_pair(rgb: np.ndarray, lms: np.ndarray, rng: np.random.Generator, jitter: bool = True, donor=None,
              grade_p: float = 0.0, lowres_p: float = 0.0, blur_p: float = 0.0):
    """One real crop and its self-blended twin, each post-processed independently, plus the fake's boundary map.
    With `donor` = (rgb, landmarks) of another person, the twin has a region of the donor's face instead.
    `grade_p`: chance that each crop gets a random global colour grade (synthesis.sbi.grade).
    `lowres_p`: chance that the pair is cut from small copies of the two photos (`small_copy`).
    `blur_p`: chance that both photos are blurred alike (Gaussian, sigma 0.5-1.5 px) before the crop: a soft real
    face is real. Why: v1.3 flags 16 % of real faces blurred by 1 px, its boundary map hottest on the face outline
    (a soft outline looks like a feathered seam); blurred pairs in stage 2 alone cut that to 6 %, but
    cost a little on every held-out set, and from stage 1 on they cost more (models/face_blend.md): 0 in the recipe.

    Returns (real, fake, fake_map) with crops (S,S,3) uint8 and map (MAP_SIZE, MAP_SIZE) float32.
    """
    framing = dict(shift=rng.uniform(-0.04, 0.04, 2), angle_jitter=rng.uniform(-8, 8),
                   margin=rng.uniform(1.15, 1.4)) if jitter else {}
    blend = self_blend(rgb, lms, rng) if donor is None else donor_blend(rgb, lms, *donor, rng)
    real_src, fake_src, mask = rgb, blend.image, blend.mask
    if lowres_p > 0 and rng.random() < lowres_p:  # (no draw at 0: the recipes without it keep their random stream)
        f = rng.uniform(0.3, 0.7)
        (real_src, small_lms), (fake_src, _) = small_copy(rgb, lms, f, rng), small_copy(blend.image, lms, f, rng)
        mask, lms = cv2.resize(mask, real_src.shape[1::-1], interpolation=cv2.INTER_AREA), small_lms
    if blur_p > 0 and rng.random() < blur_p:  # (likewise; the seam is still where the map says, only softer)
        sigma = rng.uniform(0.5, 1.5)
        real_src, fake_src = (cv2.GaussianBlur(x, (0, 0), sigma) for x in (real_src, fake_src))
    real, m = align_face(real_src, lms, **framing)
    fake, _ = align_face(fake_src, lms, **framing)
    fmap = cv2.warpAffine(boundary(mask), m, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR)
    fmap = cv2.resize(fmap, (MAP_SIZE, MAP_SIZE), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:  # mirror the pair together so the map still matches the fake
        real, fake, fmap = real[:, ::-1], fake[:, ::-1], fmap[:, ::-1]
    if grade_p > 0:  # (likewise)
        real, fake = (grade(c, rng) if rng.random() < grade_p else c for c in (real, fake))
    return degrade(real, rng), degrade(fake, rng), np.ascontiguousarray(fmap, dtype=np.float32)


def small_copy(rgb: np.ndarray, lms: np.ndarray, f: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The photo shrunk by f (area filter) and, 70 % of the time, saved as JPEG at quality 50-95 at that size, with
    its landmarks moved along: a thumbnail or shared copy, whose face the aligner must then enlarge to the crop.
    Why: v1.3, never trained on such faces, flags 13 % of real LFW faces given half size and JPEG 75
    (benchmarks/eval_robustness.py). A quarter of stage 2's pairs made this way did not lower that
    (models/face_blend.md), so the recipe does not use it."""
    h, w = rgb.shape[:2]
    size = (max(1, round(w * f)), max(1, round(h * f)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    if rng.random() < 0.7:
        small = jpeg_roundtrip(small, int(rng.integers(50, 96)))
    scale = np.array([size[0] / w, size[1] / h], np.float32)
    return np.ascontiguousarray(small), (lms + 0.5) * scale - 0.5  # pixel centres, as the resize maps them


def heldout_pairs(faces: FaceSet, seed: int, limit: int | None = None):
    """Deterministic real/fake crops for validation or test (no framing jitter: as the scanner frames faces)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(faces.paths))[:limit]
    reals, fakes = [], []
    for i in order:
        real, fake, _ = make_pair(faces.image(i), faces.landmarks[i], rng, jitter=False)
        reals.append(real)
        fakes.append(fake)
    return np.stack(reals), np.stack(fakes)
