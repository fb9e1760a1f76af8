"""End to end through the installed `deepscreen` command: a folder of good and bad files, JSON Lines, exit codes,
one-line errors, and the HTML report."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from media_factory import gradient, no_streams_mp4, sine, write_video

CLI = [sys.executable, "-m", "deepscreen.cli"]


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


def huge_png(path: Path, width: int = 30000, height: int = 30000) -> Path:
    """A valid PNG header that claims 30000x30000 (a decompression bomb) with a tiny body."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    body = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, face_video, lfw_face_path):
    """Good files (a face video, a face photo, a no-face image) next to every kind of bad input."""
    root = tmp_path_factory.mktemp("mixed")
    good = root / "good"
    good.mkdir()
    shutil.copy(face_video, good / "clip.mp4")
    shutil.copy(lfw_face_path, good / "photo.jpg")
    Image.fromarray(gradient(120, 160)).save(good / "wall.png")

    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    data = face_video.read_bytes()
    (bad / "truncated.mp4").write_bytes(data[: len(data) // 3])
    jpeg = lfw_face_path.read_bytes()
    (bad / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (bad / "notes.mp4").write_text("this is not a video\n" * 20)
    huge_png(bad / "bomb.png")
    no_streams_mp4(bad / "hollow.mp4")
    write_video(good / "tone_only.mp4", [], fps=25, audio=sine(1.0))  # sound, no picture: an audio file
    return root


def test_scan_mixed_folder_reports_every_file(mixed_folder, tmp_path):
    report = tmp_path / "report.html"
    missing = mixed_folder / "does_not_exist.mov"
    empty = tmp_path / "empty_folder"  # given as an argument: nothing to scan is an error, not a silent pass
    empty.mkdir()
    res = run_cli("scan", mixed_folder, missing, empty, "--json", "--report", report)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout

    rows = [json.loads(line) for line in res.stdout.splitlines()]
    by_name = {Path(r["path"]).name: r for r in rows}
    expected_bad = {"empty.jpg", "truncated.mp4", "truncated.jpg", "notes.mp4", "bomb.png", "hollow.mp4",
                    "empty_folder", "does_not_exist.mov"}
    assert set(by_name) == expected_bad | {"clip.mp4", "photo.jpg", "wall.png", "tone_only.mp4"}

    # Every bad file: label error and exactly one stderr line that names it.
    err_lines = [line for line in res.stderr.splitlines() if line.startswith("deepscreen: error:")]
    assert len(err_lines) == len(expected_bad)
    for name in expected_bad:
        assert by_name[name]["label"] == "error"
        assert "\n" not in by_name[name]["error"]
        assert sum(name in line for line in err_lines) == 1, (name, err_lines)
    assert "30000x30000" in by_name["bomb.png"]["error"]
    assert "not a media file" in by_name["notes.mp4"]["error"]
    assert "no video or sound stream" in by_name["hollow.mp4"]["error"]
    tone = by_name["tone_only.mp4"]  # a tone is not speech: the voice detector abstains, nothing is scored
    assert tone["kind"] == "audio" and tone["label"] == "inconclusive" and tone["voice"]["probability"] is None

    # The good files were still scanned in the same run.
    clip, photo, wall = by_name["clip.mp4"], by_name["photo.jpg"], by_name["wall.png"]
    assert clip["kind"] == "video" and len(clip["timeline"]) == 8 and len(clip["faces"]) == 1
    assert 0.0 <= clip["probability"] <= 1.0 and len(clip["sha256"]) == 64
    assert photo["kind"] == "image" and len(photo["faces"]) == 1
    assert wall["label"] == "inconclusive" and wall["probability"] is None
    for r in (clip, photo):
        assert r["evidence"][0]["detector"] == "face_blend" and r["models"][0]["sha256"]
        face = r["faces"][0]
        assert len(face["box"]) == 4 and "peak_time_s" in face and r["elapsed_s"] > 0

    html = report.read_text()
    parser = _Tags()
    parser.feed(html)
    assert parser.tags["section"] == 1 + len(rows)  # the summary card plus one card per file
    assert "<svg" in html and html.count("data:image/png;base64,") >= 4  # crop + heat map for 2 faces
    assert "http://" not in html and "https://" not in html
    for name in ("clip.mp4", "photo.jpg", "bomb.png"):
        assert name in html


def test_exit_codes_clean_and_flagged(tmp_path, lfw_face):
    Image.fromarray(gradient(120, 160)).save(tmp_path / "wall.png")
    res = run_cli("scan", tmp_path / "wall.png", "-q")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and "error" not in res.stderr

    res = run_cli("scan", tmp_path / "missing.jpg")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"deepscreen: error: {tmp_path / 'missing.jpg'}: no such file"]



def invoke(*args):
    """The command in this process (typer's CliRunner): for what does not need the real entry point, it saves
    starting Python and importing torch per call. Exit codes and stderr of the real command: run_cli."""
    from typer.testing import CliRunner

    from deepscreen.cli import app

    return CliRunner().invoke(app, list(map(str, args)))


@pytest.mark.needs_data
def test_bands_from_the_command_line(tmp_path, lfw_face_path):
    """--threshold / --suspicious-from relabel the same score (and so the exit code), the report states the bands
    it used, and bands out of order are refused with one message."""
    res = invoke("scan", lfw_face_path, "--json")
    p = json.loads(res.stdout)["probability"]
    assert res.exit_code == 0 and 0 < p < 0.25, (p, res.stderr)  # a real LFW face, under the default bands

    res = invoke("scan", lfw_face_path, "--json", "--suspicious-from", p / 2)
    assert res.exit_code == 1 and json.loads(res.stdout)["label"] == "suspicious"
    res = invoke("scan", lfw_face_path, "--json", "--suspicious-from", p / 4, "--threshold", p / 2)
    assert res.exit_code == 1 and json.loads(res.stdout)["label"] == "manipulated"

    report = tmp_path / "bands.html"
    res = invoke("scan", lfw_face_path, "-q", "--suspicious-from", 0.3, "--threshold", 0.7, "--report", report)
    assert res.exit_code == 0, res.stderr
    assert "from 30% to below 70%" in report.read_text()

    res = invoke("scan", lfw_face_path, "--suspicious-from", 0.6, "--threshold", 0.4)
    message = " ".join(res.stderr.replace("│", " ").split())  # typer's error box wraps at the terminal width
    assert res.exit_code == 2 and "suspicious (0.6) <= manipulated (0.4)" in message


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: dict[str, int] = {}

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
