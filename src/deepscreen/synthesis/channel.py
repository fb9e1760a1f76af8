"""The video channel: what a face goes through between a forger's blend and a viewer's screen.

A face swap is blended at full quality and then shared: scaled into a frame, encoded by a video codec at a web
bitrate, decoded, and found again by a face detector whose landmarks jitter on the degraded picture. A detector
that only ever sees clean photos reads those traces (blocking, smoothed skin, ringing at the face outline) as a
seam. So a training pair (a real face and its forgery) goes through the same channel, alike for both, *after*
the blend, as real deepfakes are made (SBI trains on compressed video frames for the same reason: Shiohara &
Yamasaki, CVPR 2022).

`pass_channel` draws one channel (face size, codec, quality, motion) and applies it to both images.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np

# Encoders and the quality range each is drawn from: crf for x264 and VP9, a fixed quantiser for MPEG-4 Part 2
# (which has no crf; a bitrate target does not bind on a three-frame clip). Ranges span "HD upload" to "re-shared, heavily compressed" (x264 crf 23 is
# ffmpeg's default; web platforms re-encode around 23-30; 34+ shows blocking on faces).
CODECS = {
    "h264": ("libx264", (20.0, 36.0)),
    "mpeg4": ("mpeg4", (3.0, 16.0)),
    "vp9": ("libvpx-vp9", (28.0, 48.0)),
}
FACE_WIDTHS = (50.0, 250.0)  # face width in the shared frame, px (the measured range of real video)
# The channel's parts, each of which can be left out to measure what it buys (`deepscreen train --channel-parts`):
# the face scaled to FACE_WIDTHS, the codec round trip, and landmarks found again on the decoded picture.
CHANNEL_PARTS = "scale,codec,redetect"


def parse_parts(parts: str) -> frozenset[str]:
    """"scale,codec" -> {"scale", "codec"}; "none" -> nothing."""
    names = frozenset(n.strip() for n in parts.split(",")) - {"none", ""}
    unknown = names - set(CHANNEL_PARTS.split(","))
    if unknown:
        raise ValueError(f"unknown channel parts {sorted(unknown)}: use {CHANNEL_PARTS} or none")
    return names


@dataclass(frozen=True)
class Channel:
    codec: str  # a key of CODECS
    quality: float  # crf, or the quantiser for mpeg4
    face_width: float  # px after scaling
    motion: tuple[int, int]  # px per frame between the three encoded frames
    keep: int  # which decoded frame is used: 0 (an intra frame) or 2 (a predicted frame)


def draw_channel(rng: np.random.Generator) -> Channel:
    codec = str(rng.choice(list(CODECS)))
    lo, hi = CODECS[codec][1]
    width = float(np.exp(rng.uniform(np.log(FACE_WIDTHS[0]), np.log(FACE_WIDTHS[1]))))
    motion = (int(rng.integers(-3, 4)), int(rng.integers(-2, 3)))
    return Channel(codec, float(rng.uniform(lo, hi)), width, motion, int(rng.choice([0, 2, 2])))


def face_width(lms: np.ndarray) -> float:
    """Width of the face as the scanner's box measures it: the landmarks' horizontal extent."""
    return float(np.ptp(lms[:, 0]))


def scale_for(lms: np.ndarray, ch: Channel, max_up: float = 1.5) -> float:
    """The resize factor that gives the face `ch.face_width`, enlarging at most `max_up` (an enlarged small photo
    is not what a larger face on camera looks like)."""
    return min(ch.face_width / max(face_width(lms), 1.0), max_up)


def resize(rgb: np.ndarray, f: float) -> np.ndarray:
    if f == 1.0:
        return rgb
    h, w = rgb.shape[:2]
    size = (max(16, round(w * f)), max(16, round(h * f)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC)


def codec_roundtrip(rgb: np.ndarray, ch: Channel, fps: int = 25) -> np.ndarray:
    """`rgb` as a viewer sees it after encoding a three-frame clip of it (moving by `ch.motion` px per frame, so
    the later frames are predicted from the first) and decoding; frame `ch.keep`, moved back into place."""
    h, w = (s - s % 2 for s in rgb.shape[:2])
    rgb = np.ascontiguousarray(rgb[:h, :w])
    dx, dy = ch.motion
    frames = [rgb if k == 0 else np.ascontiguousarray(cv2.warpAffine(
        rgb, np.float32([[1, 0, k * dx], [0, 1, k * dy]]), (w, h), borderMode=cv2.BORDER_REPLICATE))
        for k in range(3)]
    name, _ = CODECS[ch.codec]
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        st = out.add_stream(name, rate=Fraction(fps))
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        if ch.codec == "h264":
            st.options = {"preset": "veryfast", "crf": f"{ch.quality:.1f}"}
        elif ch.codec == "vp9":
            st.options = {"crf": str(round(ch.quality)), "b": "0", "deadline": "realtime", "cpu-used": "8"}
        else:
            st.options = {"qmin": str(round(ch.quality)), "qmax": str(round(ch.quality))}
        for f in frames:
            for pkt in st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(pkt)
        out.mux(st.encode())
    buf.seek(0)
    with av.open(buf, "r") as inp:
        decoded = [f.to_ndarray(format="rgb24") for f in inp.decode(video=0)]
    k = min(ch.keep, len(decoded) - 1)
    out_rgb = decoded[k]
    if k:
        out_rgb = cv2.warpAffine(out_rgb, np.float32([[1, 0, -k * dx], [0, 1, -k * dy]]), (w, h),
                                 borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(out_rgb)


def pass_channel(real: np.ndarray, fake: np.ndarray, mask: np.ndarray, lms: np.ndarray, ch: Channel,
                 parts: frozenset[str] = frozenset({"scale", "codec"})):
    """Scale the pair so the face is `ch.face_width` wide and send both through the same codec settings (each only
    where `parts` holds it). Returns (real, fake, mask, landmarks) at the new scale; landmarks are only moved, not
    re-found (the caller finds them on the decoded real picture, as the scanner would)."""
    f = scale_for(lms, ch) if "scale" in parts else 1.0
    h0, w0 = real.shape[:2]
    real, fake = resize(real, f), resize(fake, f)
    h, w = (s - s % 2 for s in real.shape[:2])
    mask = cv2.resize(mask, (real.shape[1], real.shape[0]), interpolation=cv2.INTER_AREA)[:h, :w]
    scale = np.array([real.shape[1] / w0, real.shape[0] / h0], np.float32)  # as the resize rounded it
    moved = (lms + 0.5) * scale - 0.5
    if "codec" not in parts:
        return np.ascontiguousarray(real[:h, :w]), np.ascontiguousarray(fake[:h, :w]), mask, moved
    return codec_roundtrip(real, ch), codec_roundtrip(fake, ch), mask, moved
