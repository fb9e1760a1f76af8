"""HTML and JSON Lines reports, built from hand-made verdicts (no model needed)."""

from __future__ import annotations

import base64
import html
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from deepscreen.config import SHARED_DIR
from deepscreen.report import render_html, to_json_line, write_html
from deepscreen.report.html import heat_overlay
from deepscreen.verdict import Evidence, FaceObservation, FaceTrack, ModelInfo, TimelinePoint, Verdict

CROP = 160


def _first_jpg(root: Path) -> Path | None:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith((".jpg", ".jpeg")):
                return Path(dirpath) / name
    return None


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    path = _first_jpg(SHARED_DIR / "data/faces/lfw")
    bgr = cv2.imread(str(path)) if path else None
    if bgr is None:  # data not present on this machine: a synthetic stand-in keeps the report tests running
        y, x = np.mgrid[0:CROP, 0:CROP]
        bgr = np.stack([x, y, (x + y) // 2], axis=-1).astype(np.uint8)
    return np.ascontiguousarray(cv2.cvtColor(cv2.resize(bgr, (CROP, CROP), interpolation=cv2.INTER_AREA),
                                             cv2.COLOR_BGR2RGB))


@pytest.fixture(scope="module")
def heat() -> np.ndarray:
    h = np.zeros((10, 10), np.float32)
    h[3:5, 6:8] = 1.0  # hot spot, upper right (x 96..128, y 48..80 at 160 px)
    return h


def _model() -> ModelInfo:
    return ModelInfo("blendnet", "0.1.0", "ab" * 32, "bfloat16")


@pytest.fixture(scope="module")
def verdicts(crop, heat) -> list[Verdict]:
    obs = [FaceObservation(i * 10, i * 0.4, (100, 80, 260, 240), p, 0.0) for i, p in enumerate((0.2, 0.7, 0.9))]
    track = FaceTrack(1, 0.91, (100, 80, 260, 240), 20, 0.8, obs, peak_crop=crop, peak_heatmap=heat)
    track2 = FaceTrack(2, 0.3, (400, 90, 520, 210), 0, 0.0, [], peak_crop=crop, peak_heatmap=None)
    timeline = [TimelinePoint(0.0, 0, 0.2), TimelinePoint(0.4, 10, 0.7), TimelinePoint(0.8, 20, 0.91),
                TimelinePoint(1.2, 30, None), TimelinePoint(1.6, 40, 0.4), TimelinePoint(2.0, 50, 0.35)]
    video = Verdict(
        path="clips/interview.mp4", sha256="c0ffee" * 10 + "abcd", kind="video", probability=0.91,
        label="manipulated", summary="One face shows blending traces around 0.8 s.", faces=[track2, track],
        timeline=timeline,
        evidence=[Evidence("blendnet", "0.1.0", 0.91, "Blending boundary around the jaw", 1),
                  Evidence("voice", "0.0.1", None, "No speech found")],
        models=[_model()],
        media={"kind": "video", "width": 1280, "height": 720, "duration_s": 2.1, "fps": 25.0, "frame_count": 52},
        elapsed_s=3.2)
    image = Verdict(
        path="photos/portrait.jpg", sha256="11" * 32, kind="image", probability=0.1, label="authentic",
        summary="No sign of manipulation on the one face found.",
        faces=[FaceTrack(1, 0.1, (10, 10, 90, 90), 0, 0.0, [], peak_crop=crop, peak_heatmap=heat)],
        evidence=[Evidence("blendnet", "0.1.0", 0.1, "Face looks consistent", 1)], models=[_model()],
        media={"kind": "image", "width": 640, "height": 480}, elapsed_s=0.4)
    error = Verdict(
        path="bad/<script>alert(1)</script>.mp4", sha256="", kind="unknown", probability=None, label="error",
        summary="Could not read the file.", error="<script>alert('x')</script> is not a media file", elapsed_s=0.01)
    inconclusive = Verdict(
        path="photos/landscape.png", sha256="22" * 32, kind="image", probability=None, label="inconclusive",
        summary="No face found, nothing to judge.",
        evidence=[Evidence("blendnet", "0.1.0", None, "No face found")], media={"kind": "image"}, elapsed_s=0.2)
    suspicious = Verdict(
        path="photos/edited.jpg", sha256="33" * 32, kind="image", probability=0.3, label="suspicious",
        summary="Borderline.", faces=[track2], media={"kind": "image", "width": 300, "height": 300})
    return [image, error, inconclusive, video, suspicious]


@pytest.fixture(scope="module")
def page(verdicts) -> str:
    return render_html(verdicts)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(fragment: str) -> list[tuple[str, dict[str, str | None]]]:
    p = _Collector()
    p.feed(fragment)
    p.close()
    return p.tags


def _sections(page: str) -> list[str]:
    return page.split('<section class="card">')[2:]  # [0] is the head, [1] the summary card


def _decode(uri: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    img = cv2.imdecode(np.frombuffer(base64.b64decode(uri[len(prefix):]), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def test_html_parses_and_is_self_contained(page):
    tags = _tags(page)
    names = [t for t, _ in tags]
    assert names[0] == "html" and "style" in names and "main" in names
    assert "script" not in names and "link" not in names and "iframe" not in names
    for _, attrs in tags:
        for key in ("src", "href"):
            val = (attrs.get(key) or "").strip().lower()
            assert not val.startswith(("http://", "https://", "//")), val
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", page, re.I)
    assert "url(" not in page  # no CSS fetches either


def test_summary_counts_and_bands(page):
    head = page.split('<section class="card">')[1]
    assert "5 files scanned" in head
    for n, lab in ((1, "authentic"), (1, "suspicious"), (1, "manipulated"), (1, "inconclusive"), (1, "error")):
        assert f"{n} {lab}" in head
    assert "8 in 10" in head and "25%" in head and "50%" in head


def test_files_ordered_most_suspicious_first(page):
    titles = [re.search(r"<h2[^>]*>(.*?)</h2>", s).group(1) for s in _sections(page)]
    assert titles[:3] == ["interview.mp4", "edited.jpg", "portrait.jpg"]
    assert titles[3] == "landscape.png" and "script" in titles[4]  # inconclusive, then errors


def test_error_is_escaped(page):
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; is not a media file" in page
    err = _sections(page)[4]
    assert "ERROR" in err and "#3c4043" in err


def test_timeline_svg_only_for_video(page):
    video, suspicious, image, inconclusive, _ = _sections(page)
    assert "<svg" in video and "<polyline" in video
    # the None point splits the line into two polylines (0, .4, .8) and (1.6, 2.0)
    assert video.count("<polyline") == 2 and "stroke-dasharray" in video and "peak 91%" in video
    assert "time (seconds)" in video
    for s in (suspicious, image, inconclusive):
        assert "<svg" not in s and "<polyline" not in s and "<path" not in s


def test_face_images_decode_to_crop_size(page, crop, heat):
    video = _sections(page)[0]
    srcs = [a["src"] for t, a in _tags(video) if t == "img"]
    assert len(srcs) == 3  # track 1: crop + overlay; track 2: crop only (no heat map)
    imgs = [_decode(s) for s in srcs]
    for img in imgs:
        assert img.shape == crop.shape
    assert np.array_equal(imgs[0], crop)  # most suspicious track (0.91) first, crop is lossless PNG
    over = imgs[1]
    assert np.array_equal(over, heat_overlay(crop, heat))
    cold = np.abs(over[130:, :40].astype(int) - crop[130:, :40].astype(int)).max()
    hot = np.abs(over[60:70, 105:120].astype(int) - crop[60:70, 105:120].astype(int)).mean()
    assert cold <= 2 and hot > 10  # cold areas stay clear, the hot spot is tinted
    assert "Face 2" in video  # track ids count from 0, people from 1
    assert "91%" in video and "frame 20" in video and "100, 80, 260, 240" in video


def test_facts_evidence_models(page, verdicts):
    video = _sections(page)[0]
    assert "1280 × 720" in video and "2.1 s" in video and "frames analysed" in video
    assert f'title="{verdicts[3].sha256}"' in video and "c0ffeec0ffeec0ff…" in video
    assert "abstained" in video and "Blending boundary around the jaw" in video
    assert "blendnet" in video and "abababababab" in video and "3.2 s" in video
    assert "<td>bfloat16 (torch)</td>" in video  # the arithmetic the scores were computed in, and by what
    assert "MANIPULATED" in video and "#d93025" in video


def test_write_html(tmp_path, verdicts):
    out = write_html(verdicts[:2], tmp_path / "r.html")
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_preview_of_every_kind_of_verdict(tmp_path, verdicts):
    """The report of every kind of verdict at once (video, image, error, inconclusive, ...), written where asked
    and nowhere else: one complete page with a card per file, each file named. To look at it, run this test with
    --basetemp and open the page."""
    out = write_html(verdicts, tmp_path / "report.html")
    assert list(tmp_path.iterdir()) == [tmp_path / "report.html"] == [out]
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    parser = _Sections()
    parser.feed(page)
    assert parser.sections == 1 + len(verdicts)  # the summary card, then one per file
    for v in verdicts:
        assert html.escape(v.path) in page, v.path


def test_json_line(verdicts):
    v = verdicts[3]
    line = to_json_line(v)
    assert "\n" not in line and "\r" not in line
    d = json.loads(line)
    assert d["probability"] == 0.91 and d["label"] == "manipulated"
    assert [p["probability"] for p in d["timeline"]] == [0.2, 0.7, 0.91, None, 0.4, 0.35]
    for face in d["faces"]:
        assert "peak_crop" not in face and "peak_heatmap" not in face
    assert d["faces"][1]["box"] == [100, 80, 260, 240]
    assert d["models"] == [{"name": "blendnet", "version": "0.1.0", "sha256": "ab" * 32, "precision": "bfloat16",
                            "runtime": "torch"}]
    assert len(line) < 5000  # no arrays sneaked in


def test_json_line_nan_becomes_null(verdicts):
    v = Verdict(path="x.jpg", sha256="0", kind="image", probability=float("nan"), label="inconclusive",
                summary="é", timeline=[TimelinePoint(0.0, 0, float("inf"))],
                evidence=[Evidence("d", "1", np.float32(0.5), "ok")], elapsed_s=float("-inf"))
    line = to_json_line(v)
    assert "NaN" not in line and "Infinity" not in line and "é" in line
    d = json.loads(line)
    assert d["probability"] is None and d["timeline"][0]["probability"] is None and d["elapsed_s"] is None
    assert d["evidence"][0]["score"] == 0.5
    assert render_html([v]).count("<svg") == 0  # NaN probability renders, without crashing


class _Sections(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sections = 0

    def handle_starttag(self, tag, attrs):
        self.sections += tag == "section"
