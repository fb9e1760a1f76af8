"""Link faces across sampled frames into tracks (one per person), so a video verdict is per person, not per crop.

Sampled frames can be a second apart, so matching is by position and size, not by frame-to-frame motion:
a face joins the track whose last box is nearest (centre distance relative to face size) and similar in size.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Track:
    track_id: int
    box: tuple[float, float, float, float]
    last_frame: int
    members: list[int] = field(default_factory=list)


class FaceTracker:
    def __init__(self, max_jump: float = 1.0, max_gap_frames: int | None = None):
        self.max_jump = max_jump  # centre may move up to this many face widths between sampled frames
        self.max_gap_frames = max_gap_frames
        self.tracks: list[_Track] = []

    def update(self, frame_index: int, boxes: list[tuple[float, float, float, float]]) -> list[int]:
        """Assign a track id to each box of one frame (greedy, closest pairs first)."""
        candidates = []
        for bi, box in enumerate(boxes):
            for ti, tr in enumerate(self.tracks):
                if self.max_gap_frames is not None and frame_index - tr.last_frame > self.max_gap_frames:
                    continue
                d = _distance(box, tr.box)
                if d <= self.max_jump:
                    candidates.append((d, bi, ti))
        ids: list[int | None] = [None] * len(boxes)
        used_tracks = set()
        for d, bi, ti in sorted(candidates):
            if ids[bi] is None and ti not in used_tracks:
                ids[bi] = self.tracks[ti].track_id
                used_tracks.add(ti)
                self.tracks[ti].box, self.tracks[ti].last_frame = boxes[bi], frame_index
        for bi, box in enumerate(boxes):
            if ids[bi] is None:
                tr = _Track(len(self.tracks), box, frame_index)
                self.tracks.append(tr)
                ids[bi] = tr.track_id
        return ids  # type: ignore[return-value]


def _distance(a, b) -> float:
    """Centre distance in face widths, inflated when the sizes differ a lot (a different person nearby)."""
    wa, wb = a[2] - a[0], b[2] - b[0]
    size = max(wa, wb, 1.0)
    dx = (a[0] + a[2] - b[0] - b[2]) / 2
    dy = (a[1] + a[3] - b[1] - b[3]) / 2
    ratio = max(wa, wb) / max(min(wa, wb), 1.0)
    return (dx * dx + dy * dy) ** 0.5 / size + max(0.0, ratio - 1.5)
