"""Face detection + 468-point landmarks with MediaPipe 0.10.21 (models ship inside the wheel, nothing downloaded).

Two stages: the full-range detector finds faces of any size, then the face mesh runs on a crop around each one.
Running the mesh on the whole frame would miss small faces (its own detector is short-range) and would cap
the number of faces we can handle cleanly.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import dataclass

import cv2
import numpy as np

_STDERR_LOCK = threading.Lock()
_DETECT_SIDE = 640  # frames larger than this are shrunk for the detector only; landmarks use full resolution


@contextlib.contextmanager
def _quiet_stderr():
    """MediaPipe/TFLite print start-up chatter (XNNPACK, feedback manager, projection warnings) from C++ straight
    to file descriptor 2, once per graph, on creation and first use. Mute fd 2 only during those calls."""
    with _STDERR_LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 2)
                yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@dataclass
class Face:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels (from the landmarks when present)
    score: float  # detector confidence
    landmarks: np.ndarray | None  # (468, 2) float32 pixel coordinates, None if the mesh failed


class FaceAnalyzer:
    """Detect faces and their landmarks in RGB uint8 frames. Create once per process; not thread-safe
    (MediaPipe graphs are stateful), so a lock guards it for services that share one instance."""

    def __init__(self, max_faces: int = 8, min_score: float = 0.5):
        import mediapipe as mp  # imported here: 0.7 s, and only scanning needs it

        self.max_faces = max_faces
        with _quiet_stderr():
            self._detector = mp.solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=min_score)
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=False, min_detection_confidence=0.3)
            # Graphs open their calculators asynchronously and those print; a first process() call waits for them.
            blank = np.zeros((64, 64, 3), np.uint8)
            self._detector.process(blank)
            self._mesh.process(blank)
        self._mesh_warmed = False  # the mesh warns once, on its first face
        self._lock = threading.Lock()

    def close(self) -> None:
        self._detector.close()
        self._mesh.close()

    def __call__(self, rgb: np.ndarray, follow: list[Face] | None = None) -> list[Face]:
        """Faces in one frame, largest first. `follow`: the faces of the previous sampled frame of a video. When
        the mesh finds each of them again near where it was, the detector is skipped (it costs as much as the
        mesh); if any is lost, or two merge, the frame is detected from scratch. New faces are found at the next
        full detection, so callers should detect from scratch every few frames (Scanner does, every 4)."""
        with self._lock:
            if follow:
                faces = self._follow(rgb, follow)
                if faces is not None:
                    return faces
            faces = self._detect(rgb)
            if not faces:
                # Tightly cropped portraits (ID photos, data sets) fill the frame and the detector, trained on
                # faces with context, misses them. A border gives it that context back.
                pad = max(rgb.shape[:2]) // 3
                padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
                faces = [_shift(f, -pad, rgb.shape) for f in self._detect(padded)]
            return faces

    def _follow(self, rgb: np.ndarray, previous: list[Face]) -> list[Face] | None:
        faces = []
        for old in previous[: self.max_faces]:
            lms = self._landmarks(rgb, old.box)
            if lms is None:
                return None
            box = tuple(float(v) for v in (*lms.min(0), *lms.max(0)))
            if any(_iou(box, f.box) > 0.5 for f in faces):  # two tracks collapsed onto one face
                return None
            faces.append(Face(box, old.score, lms))
        faces.sort(key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        return faces

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        h, w = rgb.shape[:2]
        # The detector looks at a 192x192 resize anyway: shrinking big frames first with an area filter is
        # cheaper than letting the graph convert and scale the full frame (720p: 5.6 -> 4.5 ms), same boxes.
        small = rgb if max(h, w) <= _DETECT_SIDE else cv2.resize(
            rgb, (round(w * _DETECT_SIDE / max(h, w)), round(h * _DETECT_SIDE / max(h, w))),
            interpolation=cv2.INTER_AREA)
        result = self._detector.process(np.ascontiguousarray(small))
        boxes = []
        for det in result.detections or []:
            b = det.location_data.relative_bounding_box
            x0, y0 = b.xmin * w, b.ymin * h
            boxes.append((float(det.score[0]), (x0, y0, x0 + b.width * w, y0 + b.height * h)))
        boxes.sort(key=lambda sb: -(sb[1][2] - sb[1][0]) * (sb[1][3] - sb[1][1]))  # largest faces first
        faces = []
        for score, box in boxes[: self.max_faces]:
            lms = self._landmarks(rgb, box)
            if lms is not None:
                box = (*lms.min(0), *lms.max(0))
            faces.append(Face(tuple(float(v) for v in box), score, lms))
        return faces

    def _landmarks(self, rgb: np.ndarray, box) -> np.ndarray | None:
        """Face mesh on a square crop of twice the box, scaled so the face is ~128 px (the mesh's own input is 192)."""
        x0, y0, x1, y1 = box
        cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, 2.0 * max(x1 - x0, y1 - y0)
        if side < 8:
            return None
        size = 256
        scale = size / side
        m = np.array([[scale, 0, size / 2 - scale * cx], [0, scale, size / 2 - scale * cy]], np.float32)
        crop = cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        if self._mesh_warmed:
            result = self._mesh.process(crop)
        else:
            with _quiet_stderr():
                result = self._mesh.process(crop)
            self._mesh_warmed = bool(result.multi_face_landmarks)
        if not result.multi_face_landmarks:
            return None
        pts = np.array([(p.x * size, p.y * size) for p in result.multi_face_landmarks[0].landmark], np.float32)
        pts = (pts - m[:, 2]) / scale  # back to frame pixels
        # The mesh may lock onto a neighbouring face inside the crop: keep it only if it overlaps the detection.
        lx0, ly0 = pts.min(0)
        lx1, ly1 = pts.max(0)
        if _iou((lx0, ly0, lx1, ly1), box) < 0.2:
            return None
        return pts


def _shift(face: Face, offset: float, shape) -> Face:
    h, w = shape[:2]
    x0, y0, x1, y1 = face.box
    box = (max(0.0, x0 + offset), max(0.0, y0 + offset), min(float(w), x1 + offset), min(float(h), y1 + offset))
    lms = None if face.landmarks is None else face.landmarks + np.float32(offset)
    return Face(box, face.score, lms)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
