"""Training pairs that went through the video channel, made once and kept on disk.

Each pair: a real face (a world photo, a real video frame or an LFW photo) and its forgery (a self-blend, or 30 %
of the time a region of another person's face), passed together through one drawn channel (synthesis.channel:
face scaled to 50-250 px, H.264 / MPEG-4 Part 2 / VP9, decoded), then found again by the scanner's FaceAnalyzer on
the decoded real picture and aligned with those landmarks, both alike: the detector learns from faces as the
scanner will see them. Encoding and face finding cost ~50 ms a pair, too much for every step of training, so
the pool is written in chunks (resumable, one seed per chunk: the same pool on every run) and training samples
from it.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from ..faces.align import CROP_SIZE, align_face
from ..synthesis.channel import CHANNEL_PARTS, draw_channel, parse_parts, pass_channel
from ..synthesis.sbi import RERENDERERS, boundary, degrade, donor_blend, self_blend
from .data import MAP_SIZE

CHUNK = 100  # pairs per file
DONOR_P = 0.3  # as stage 2
PHOTO_CHANNEL_P = 0.75  # photos also reach users as photos: a quarter keep the photo post-processing instead


def _group(faceset, i: int) -> str:
    return faceset.groups[i] if hasattr(faceset, "groups") else faceset.paths[i].split("/")[0]


def make_channel_pair(sets, weights, rng: np.random.Generator, analyzer, jitter: bool = True,
                      face_width: float | None = None, rerender_p: float = 0.0,
                      painters: tuple[str, ...] = RERENDERERS, parts: str = CHANNEL_PARTS):
    """One (real crop, fake crop, fake boundary map, face width in px as the scanner's box measures it) or None when
    the scanner would find no face after the channel (then it would not be scored either). `face_width` forces the
    channel, at that face width (for measuring where the detector stops telling real from fake). `parts`: the
    channel's parts used (all but to measure what each buys; "none": every pair keeps the photo post-processing)."""
    used = parse_parts(parts)
    s = int(rng.choice(len(sets), p=weights))
    faces = sets[s]
    i = int(rng.integers(len(faces)))
    rgb, lms = faces.image(i), faces.landmarks[i]
    if rng.random() < DONOR_P:
        j = int(rng.integers(len(faces)))
        while _group(faces, j) == _group(faces, i):
            j = int(rng.integers(len(faces)))
        blend = donor_blend(rgb, lms, faces.image(j), faces.landmarks[j], rng, rerender_p=rerender_p,
                            painters=painters)
    else:
        blend = self_blend(rgb, lms, rng, rerender_p=rerender_p, painters=painters)
    kind = getattr(faces, "kinds", None)
    kind = kind[i] if kind else "photo"
    framing = dict(shift=rng.uniform(-0.04, 0.04, 2), angle_jitter=rng.uniform(-8, 8),
                   margin=rng.uniform(1.15, 1.4)) if jitter else {}
    to_channel = kind == "video" or face_width is not None or rng.random() < PHOTO_CHANNEL_P
    if to_channel and used:
        ch = draw_channel(rng)
        if face_width is not None:
            ch = replace(ch, face_width=face_width)
        real, fake, mask, moved = pass_channel(rgb, blend.image, blend.mask, lms, ch, used)
        if "redetect" in used:
            found = analyzer(real)
            if not found or found[0].landmarks is None:
                return None
            lms = found[0].landmarks
            width = found[0].box[2] - found[0].box[0]
        else:
            lms, width = moved, float(np.ptp(moved[:, 0]))
        post = False
    else:
        real, fake, mask, post = rgb, blend.image, blend.mask, True
        width = float(np.ptp(lms[:, 0]))
    real_c, m = align_face(real, lms, **framing)
    fake_c, _ = align_face(fake, lms, **framing)
    fmap = cv2.warpAffine(boundary(mask), m, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR)
    fmap = cv2.resize(fmap, (MAP_SIZE, MAP_SIZE), interpolation=cv2.INTER_AREA)
    if post:
        real_c, fake_c = degrade(real_c, rng), degrade(fake_c, rng)
    return real_c, fake_c, np.ascontiguousarray(fmap, np.float32), float(width)


_WORKER: dict = {}


def _init_worker(loader):
    from ..faces.detect import FaceAnalyzer

    _WORKER["sets"], _WORKER["weights"] = loader()
    _WORKER["analyzer"] = FaceAnalyzer(max_faces=1)


def _make_chunk(args):
    out, seed, chunk, jitter, rerender_p, painters, parts = args
    rng = np.random.default_rng([seed, chunk])
    reals, fakes, maps, widths = [], [], [], []
    while len(reals) < CHUNK:
        pair = make_channel_pair(_WORKER["sets"], _WORKER["weights"], rng, _WORKER["analyzer"], jitter,
                                 rerender_p=rerender_p, painters=painters, parts=parts)
        if pair is None:
            continue
        reals.append(pair[0])
        fakes.append(pair[1])
        maps.append(pair[2])
        widths.append(pair[3])
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, real=np.stack(reals), fake=np.stack(fakes), maps=np.stack(maps), width=np.array(widths))
    tmp.rename(out)  # a chunk file exists only when whole: a stopped run resumes at the first missing one
    return chunk


def build_pool(folder: Path, loader, pairs: int, seed: int, jitter: bool = True, workers: int = 2,
               log=print, rerender_p: float = 0.0, painters: tuple[str, ...] = RERENDERERS,
               parts: str = CHANNEL_PARTS) -> dict[str, np.ndarray]:
    """Make (or finish) a pool of `pairs` pairs in `folder` and load it. `loader()` -> (face sets, weights) is
    called once per worker process (it must be picklable: a module-level function or a functools.partial).
    The settings that shape its pairs are kept in folder/pool.json: a folder made with others is refused rather
    than silently reused."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"seed": seed, "jitter": jitter, "rerender_p": rerender_p}
    if rerender_p and tuple(painters) != RERENDERERS:  # pools made before painters could be chosen keep their name
        settings["painters"] = list(painters)
    if parse_parts(parts) != parse_parts(CHANNEL_PARTS):  # likewise pools of the whole channel
        settings["channel_parts"] = sorted(parse_parts(parts))
    made = folder / "pool.json"
    if made.exists() and json.loads(made.read_text()) != settings:
        raise ValueError(f"{folder} holds a pool made with {made.read_text().strip()}, not {settings}: "
                         "give another work folder")
    if not made.exists():
        if any(folder.glob("chunk*.npz")) and rerender_p:  # chunks from before pool.json: made without re-rendering
            raise ValueError(f"{folder} holds a pool made without re-rendered faces: give another work folder")
        made.write_text(json.dumps(settings))
    n = -(-pairs // CHUNK)
    todo = [(folder / f"chunk{c:04d}.npz", seed, c, jitter, rerender_p, tuple(painters), parts) for c in range(n)
            if not (folder / f"chunk{c:04d}.npz").exists()]
    if todo:
        log(f"channel pool {folder.name}: making {len(todo)} of {n} chunks of {CHUNK} pairs")
        ctx = mp.get_context("spawn")  # MediaPipe and torch do not survive fork well
        with ctx.Pool(workers, initializer=_init_worker, initargs=(loader,)) as pool:
            for done, c in enumerate(pool.imap_unordered(_make_chunk, todo), 1):
                if done % 5 == 0 or done == len(todo):
                    log(f"channel pool {folder.name}: {done}/{len(todo)} chunks")
    parts = [np.load(folder / f"chunk{c:04d}.npz") for c in range(n)]
    keys = [k for k in ("real", "fake", "maps", "width") if all(k in p.files for p in parts)]
    return {k: np.concatenate([p[k] for p in parts])[:pairs] for k in keys}
