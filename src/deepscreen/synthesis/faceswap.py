"""Classic landmark face swaps: a forgery method the face-blend detector is never trained on.

The recipe of the pre-deep-learning face-swap tools and tutorials: triangulate the face's landmarks, warp each
triangle of another person's face onto the matching triangle of this one (a piecewise-affine warp, so the donor
takes this face's exact shape and pose), then merge it in with Poisson image editing (Pérez, Gangnet & Blake,
SIGGRAPH 2003; OpenCV's `seamlessClone`), which matches colour and lighting through the gradient field instead of
an alpha mask. Training only ever sees alpha blends after a similarity transform (synthesis/sbi.py), so scores on
these measure generalisation to a blending and a warp the detector has not seen (`deepscreen synthesize --method
faceswap`; models/face_blend.md, set (c)). Our own implementation of that public recipe.
"""

from __future__ import annotations

import cv2
import numpy as np

from .sbi import INNER_FACE, Blend, _face_size, similarity_transform


def mesh_triangles(points: np.ndarray) -> np.ndarray:
    """(T, 3) landmark indices: a Delaunay triangulation of this face's landmarks. Mesh landmarks correspond from
    face to face, so the same index triples on the donor are the same patches of skin; triangulating the target's
    own points keeps its triangles from overlapping."""
    from scipy.spatial import Delaunay

    return Delaunay(np.asarray(points, np.float64)).simplices


def warp_piecewise(donor: np.ndarray, donor_lms: np.ndarray, lms: np.ndarray, base: np.ndarray,
                   tris: np.ndarray) -> np.ndarray:
    """`base` (HxWx3) with the donor image warped over it triangle by triangle, so that the donor's landmarks land
    on `lms`. Outside the triangulated face `base` stays: the Poisson solver reads gradients just outside its mask,
    and a black surround would darken the swap's rim."""
    h, w = base.shape[:2]
    out = base.astype(np.float32)
    src_img = donor.astype(np.float32)
    for tri in tris:
        s, d = donor_lms[tri].astype(np.float32), lms[tri].astype(np.float32)
        x, y, bw, bh = cv2.boundingRect(d)
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + bw, w), min(y + bh, h)
        if x1 <= x0 or y1 <= y0:
            continue
        local = (d - np.float32([x0, y0])).astype(np.float32)
        m = cv2.getAffineTransform(s, local)
        patch = cv2.warpAffine(src_img, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        mask = np.zeros((y1 - y0, x1 - x0), np.float32)
        cv2.fillConvexPoly(mask, np.round(local).astype(np.int32), 1.0)
        region = out[y0:y1, x0:x1]
        region[:] = np.where(mask[..., None] > 0, patch, region)
    return out


def face_swap(rgb: np.ndarray, lms: np.ndarray, donor: np.ndarray, donor_lms: np.ndarray,
              rng: np.random.Generator, region: str | None = None) -> Blend:
    """`rgb` (HxWx3 uint8) with the face of `donor` swapped in by a piecewise-affine warp and Poisson blending.
    `region`: 'face' (inside the landmarks' hull, shrunk a little so the clone's border lies on skin) or 'inner'
    (eyes, nose, mouth and cheeks, the classic swap region); drawn at random if not given."""
    h, w = rgb.shape[:2]
    region = region or ("face" if rng.random() < 0.5 else "inner")
    tris = mesh_triangles(lms)
    warped = warp_piecewise(donor, donor_lms, lms, rgb, tris)
    pts = lms if region == "face" else lms[INNER_FACE]
    hull = cv2.convexHull(pts.astype(np.float32))
    centre = pts.mean(0)
    hull = (hull - centre) * (0.92 if region == "face" else 1.0) + centre  # keep the border off the hair line
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, np.round(hull).astype(np.int32), 255)
    mask[:2], mask[-2:], mask[:, :2], mask[:, -2:] = 0, 0, 0, 0  # seamlessClone needs a margin inside the image
    ys, xs = np.nonzero(mask)
    if len(xs) < 64:
        raise ValueError("face too small to swap")
    # seamlessClone centres the mask's bounding box on `centre`: give it the box's own centre so nothing moves.
    centre = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
    src = np.clip(warped + 0.5, 0, 255).astype(np.uint8)
    # (seamlessClone writes into the mask it is given: it gets a copy, so the returned mask is the one used)
    out = cv2.seamlessClone(src[..., ::-1].copy(), rgb[..., ::-1].copy(), mask.copy(), centre,
                          cv2.NORMAL_CLONE)[..., ::-1]
    return Blend(np.ascontiguousarray(out), mask.astype(np.float32) / 255.0, f"faceswap:{region}")


def shape_misfit(lms: np.ndarray, other: np.ndarray) -> float:
    """How badly `other`'s landmarks fit `lms` after the best similarity transform (RMS residual / face size):
    low for faces in the same pose with the same expression."""
    m = similarity_transform(other, lms)
    moved = other @ m[:, :2].T + m[:, 2]
    return float(np.sqrt(((moved - lms) ** 2).sum(1).mean()) / _face_size(lms))


def pick_donor(lms: np.ndarray, candidates: list[int], landmarks: np.ndarray) -> int:
    """The candidate whose face fits this one best (shape_misfit), as a forger picks a source photo in the same
    pose and expression: a closed mouth is not pasted over an open one."""
    return min(candidates, key=lambda j: shape_misfit(lms, landmarks[j]))
