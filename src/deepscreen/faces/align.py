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
    """Return (crop HxWx3 uint8, 2x3 matrix). Areas outside the image are filled by replicating its border."""
    m = alignment_matrix(landmarks, size, **jitter)
    crop = cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_AREA if m[0, 0] < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return crop, m


def crop_box_in_image(m: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """The crop's four corners in image pixels (for drawing where a heat map lies on the frame)."""
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float32)
    return corners @ inv[:, :2].T + inv[:, 2]
