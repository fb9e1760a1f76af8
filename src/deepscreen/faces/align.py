"""Align a face to a fixed square crop: eyes level, the landmark extent centred, with a margin.

Training (synthesis) and scanning use this same function, so the detector sees faces framed the same way.
The margin keeps the face outline and a little background: blending boundaries live there.
"""

from __future__ import annotations

import cv2
import numpy as np

CROP_SIZE = 160
MARGIN = 1.25  # crop side = MARGIN x the larger extent of the 468 landmarks

# MediaPipe face-mesh indices of the eye corners (one eye: 33/133, the other: 362/263).
_EYE_A = (33, 133)
_EYE_B = (362, 263)


def alignment_matrix(
    landmarks: np.ndarray, size: int = CROP_SIZE, margin: float = MARGIN, shift=(0.0, 0.0), angle_jitter: float = 0.0
) -> np.ndarray:
    """2x3 affine matrix taking image pixels to crop pixels. `shift` (fraction of the side) and `angle_jitter`
    (degrees) let training vary the framing slightly so the detector does not rely on exact placement."""
    eye_a = landmarks[list(_EYE_A)].mean(0)
    eye_b = landmarks[list(_EYE_B)].mean(0)
    left, right = (eye_a, eye_b) if eye_a[0] < eye_b[0] else (eye_b, eye_a)
    angle = np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])) + angle_jitter
    centre = landmarks.mean(0)
    rot = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle), 1.0)
    pts = landmarks @ rot[:, :2].T + rot[:, 2]
    lo, hi = pts.min(0), pts.max(0)
    side = float((hi - lo).max()) * margin
    mid = (lo + hi) / 2 + np.asarray(shift) * side
    scale = size / max(side, 1.0)
    m = rot * scale
    m[:, 2] = rot[:, 2] * scale + (size / 2 - scale * mid)
    return m.astype(np.float32)


def align_face(rgb: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE, **jitter) -> tuple[np.ndarray, np.ndarray]:
    """Return (crop HxWx3 uint8, 2x3 matrix from image to crop). Areas outside the image are filled by replicating
    its border. A face larger than the crop is area-averaged down first (see `_shrink_for`)."""
    m = alignment_matrix(landmarks, size, **jitter)
    src, warp = _shrink_for(rgb, m, size)
    crop = cv2.warpAffine(src, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop, m


def _shrink_for(rgb: np.ndarray, m: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(image, matrix) to warp from so that the crop is not aliased.

    warpAffine has no area filter (INTER_AREA falls back to bilinear), so a 500-pixel face sampled straight down to
    160 px keeps only every third pixel: fine texture turns into high-frequency noise, exactly the kind of trace
    a blending detector looks for, on real photos. Training faces (LFW) are almost all enlarged (median scale
    1.16), so large faces in sharp photos and HD video were out of distribution twice over. Here the part of the
    image under the crop is first resized with area averaging to the crop's scale, then rotated into place."""
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale >= 1.0:
        return rgb, m
    h, w = rgb.shape[:2]
    corners = crop_box_in_image(m, size)
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 2, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 2, (w, h))
    if x1 - x0 < 2 or y1 - y0 < 2:  # the crop lies outside the image: nothing to average
        return rgb, m
    region = rgb[y0:y1, x0:x1]
    sw, sh = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
    small = cv2.resize(region, (sw, sh), interpolation=cv2.INTER_AREA)
    f = np.array([(x1 - x0) / sw, (y1 - y0) / sh])
    # small pixel u has its centre at region pixel (u + 0.5) f - 0.5 (cv2.resize's convention)
    warp = np.empty((2, 3), np.float32)
    warp[:, :2] = m[:, :2] @ np.diag(f)
    warp[:, 2] = m[:, :2] @ (np.array([x0, y0]) + 0.5 * (f - 1)) + m[:, 2]
    return small, warp


def crop_box_in_image(m: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """The crop's four corners in image pixels (for drawing where a heat map lies on the frame)."""
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float32)
    return corners @ inv[:, :2].T + inv[:, 2]
