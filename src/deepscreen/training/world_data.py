"""Real faces of the world beside LFW: photos of other sources and frames of real face videos.

Every training forgery is made from a real face, so the real class must cover what users scan, not one data set:
`../shared/data/faces/world/train` (press-free portraits, demographic crops, movie frames, landmark sets) and the
frames of `../shared/data/video/train/real` (people on camera, codecs as shipped). The `dev/` folders beside them
are never read here. Landmarks are found once with the scanner's own FaceAnalyzer and cached, with the video
frames as PNG crops around the face (lossless: the codec traces are the clip's own).
"""

from __future__ import annotations

import csv
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

VAL_SHARE = 15  # percent of identities (photos) and clips (videos) kept for validation and calibration
FRAMES_PER_CLIP = 16
MAX_FACE_WIDTH = 320  # stored video crops are shrunk so the face is at most this wide (the channel shrinks further)


def split_of(group: str) -> str:
    return "val" if zlib.crc32(group.encode()) % 100 < VAL_SHARE else "train"


@dataclass
class RealFaces:
    """Real face images (absolute paths) with their landmarks, the group a split keeps together, and the kind of
    source ('photo' or 'video')."""

    paths: list[str]
    landmarks: np.ndarray  # (N, 468, 2) float32
    groups: list[str]
    kinds: list[str]

    def split(self, name: str) -> "RealFaces":
        keep = [i for i, g in enumerate(self.groups) if split_of(g) == name]
        return RealFaces([self.paths[i] for i in keep], self.landmarks[keep], [self.groups[i] for i in keep],
                         [self.kinds[i] for i in keep])

    def of_kind(self, kind: str) -> "RealFaces":
        keep = [i for i, k in enumerate(self.kinds) if k == kind]
        return RealFaces([self.paths[i] for i in keep], self.landmarks[keep], [self.groups[i] for i in keep],
                         [self.kinds[i] for i in keep])

    def image(self, i: int) -> np.ndarray:
        with Image.open(self.paths[i]) as im:
            return np.asarray(im.convert("RGB"))

    def __len__(self) -> int:
        return len(self.paths)


def load_world(shared: Path, cache_dir: Path, progress=print) -> RealFaces:
    """World photos (train split of the manifest) and real training video frames, with landmarks (cached)."""
    cache = cache_dir / "world_faces.npz"
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        return RealFaces(list(z["paths"]), z["landmarks"], list(z["groups"]), list(z["kinds"]))
    from ..faces.detect import FaceAnalyzer

    analyzer = FaceAnalyzer(max_faces=1)
    paths, lms, groups, kinds = [], [], [], []
    world = shared / "data/faces/world"
    with open(world / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    for n, row in enumerate(rows):
        path = world / row["file"]
        with Image.open(path) as im:
            faces = analyzer(np.asarray(im.convert("RGB")))
        if faces and faces[0].landmarks is not None:
            paths.append(str(path))
            lms.append(faces[0].landmarks)
            groups.append(f"{row['source_dataset']}:{row['identity'] or row['file']}")
            kinds.append("photo")
        if n % 200 == 0:
            progress(f"world photos {n}/{len(rows)}")
    frames_dir = cache_dir / "video_frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    clips = sorted((shared / "data/video/train/real").glob("*"))
    for n, clip in enumerate(clips):
        for k, (rgb, found) in enumerate(_clip_faces(clip, analyzer)):
            out = frames_dir / f"{clip.stem}__{k:02d}.png"
            Image.fromarray(rgb).save(out)
            paths.append(str(out))
            lms.append(found)
            groups.append(f"video:{clip.name}")
            kinds.append("video")
        progress(f"video clips {n + 1}/{len(clips)}")
    analyzer.close()
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(cache, paths=np.array(paths), landmarks=np.stack(lms).astype(np.float32), groups=np.array(groups),
             kinds=np.array(kinds))
    return RealFaces(paths, np.stack(lms).astype(np.float32), groups, kinds)


def _clip_faces(clip: Path, analyzer):
    """(crop around the largest face, its landmarks in the crop) for FRAMES_PER_CLIP frames spread over the clip,
    decoded by the scanner's own media code."""
    from ..config import Limits, Sampling
    from ..media import iter_frames, probe

    limits = Limits()
    info = probe(clip, limits)
    for frame in iter_frames(clip, info, Sampling(frames=FRAMES_PER_CLIP, max_fps=8.0), limits):
        faces = analyzer(frame.rgb)
        if not faces or faces[0].landmarks is None:
            continue
        yield face_region(frame.rgb, faces[0].landmarks)


def face_region(rgb: np.ndarray, lms: np.ndarray, context: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The part of a frame around a face (its box grown by `context` face sizes on each side), shrunk so the face
    is at most MAX_FACE_WIDTH wide, with the landmarks moved along."""
    lo, hi = lms.min(0), lms.max(0)
    side = float((hi - lo).max())
    h, w = rgb.shape[:2]
    x0, y0 = np.maximum(np.floor(lo - context * side).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(hi + context * side).astype(int), (w, h))
    region, moved = rgb[y0:y1, x0:x1], lms - np.array([x0, y0], np.float32)
    f = min(1.0, MAX_FACE_WIDTH / max(float(np.ptp(lms[:, 0])), 1.0))
    if f < 1.0:
        size = (max(1, round(region.shape[1] * f)), max(1, round(region.shape[0] * f)))
        scale = np.array([size[0] / region.shape[1], size[1] / region.shape[0]], np.float32)
        region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
        moved = (moved + 0.5) * scale - 0.5
    return np.ascontiguousarray(region), moved.astype(np.float32)


# How often stage 3 draws each kind of real face: video frames most (video is the home ground the issue asks
# for), world photos next, LFW least (stage 3's own on-the-fly LFW pairs keep what stages 1-2 learned).
SOURCE_WEIGHTS = {"video": 0.45, "photo": 0.35, "lfw": 0.20}


def stage3_sources(shared: Path, lfw_root: Path, lfw_cache: Path, world_cache: Path, split: str):
    """(face sets, weights) for the channel pool of one split: video frames, world photos, LFW people."""
    from .data import load_faceset

    world = load_world(shared, world_cache).split(split)
    lfw = load_faceset(lfw_root, lfw_cache).split(split)
    sets = [world.of_kind("video"), world.of_kind("photo"), lfw]
    return sets, [SOURCE_WEIGHTS[k] for k in ("video", "photo", "lfw")]
