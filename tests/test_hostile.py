"""Hostile names and hostile media found by fuzzing: each is one error of that file, and the run goes on."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepscreen.media import MediaError, probe
from deepscreen.media.errors import shown_path
from deepscreen.scan import expand_paths

from media_factory import gradient, write_audio


def _good(path: Path) -> Path:
    Image.fromarray(gradient(60, 80)).save(path)
    return path


def _deep_file(root: Path, min_bytes: int = 4097) -> Path:
    """A file whose absolute path is longer than PATH_MAX (4096): made one folder at a time, relative to the last,
    as only such a path can be made."""
    here = os.getcwd()
    parts = [root]
    try:
        os.chdir(root)
        while len(os.fsencode(str(Path(*parts)))) < min_bytes:
            os.mkdir("d" * 200)
            os.chdir("d" * 200)
            parts.append("d" * 200)
        _good(Path("deep.png"))
    finally:
        os.chdir(here)
    return Path(*parts, "deep.png")


def _webp_bomb(path: Path, side: int = 16000) -> Path:
    """A lossless WebP header that claims side x side pixels, with almost no body."""
    bits = (side - 1) | (side - 1) << 14
    payload = b"\x2f" + struct.pack("<I", bits) + bytes(32)
    chunk = b"VP8L" + struct.pack("<I", len(payload)) + payload
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk)
    return path


def test_expand_paths_yields_what_it_cannot_look_at(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _good(folder / "a.png")
    os.symlink("loop", folder / "loop")
    os.mkfifo(folder / "pipe")
    long_name = tmp_path / ("x" * 300 + ".jpg")
    too_long = tmp_path / ("y/" * 2100 + "z.jpg")
    nul = "a\0b.jpg"
    assert list(expand_paths([folder, long_name, too_long, nul])) == [
        folder / "a.png", folder / "loop", folder / "pipe", long_name, too_long, Path(nul)]


def test_folder_that_cannot_be_listed_is_yielded(tmp_path):
    folder = tmp_path / "in"
    (folder / "locked").mkdir(parents=True)
    _good(folder / "a.png")
    os.chmod(folder / "locked", 0)
    try:
        if os.access(folder / "locked", os.R_OK):
            pytest.skip("this user can list mode-000 folders (root)")
        assert list(expand_paths([folder])) == [folder / "a.png", folder / "locked"]
    finally:
        os.chmod(folder / "locked", 0o755)


def test_undecodable_name_is_escaped_as_its_bytes():
    name = os.fsdecode(b"caf\xe9 \xff.jpg")  # Latin-1 bytes, as an old archive leaves them
    assert shown_path(name) == ("caf\\xe9 \\xff.jpg", True)
    assert shown_path("café.jpg") == ("café.jpg", False)


def test_webp_bomb_is_refused_in_the_scanners_words(tmp_path):
    bomb = _webp_bomb(tmp_path / "bomb.webp")
    with pytest.raises(MediaError) as err:
        probe(bomb)
    assert str(err.value) == f"{bomb}: image is 16000x16000 = 256 MP, over the 50 MP limit"


def test_every_hostile_path_is_one_error_and_the_run_goes_on(tmp_path):
    """Through the real entry point with a strict UTF-8 stdout: exit 2, one stderr line per hostile path, valid
    UTF-8 JSON for every file, and the good file and the oddly named one are scanned in the same run."""
    folder = tmp_path / "in"
    folder.mkdir()
    good = _good(folder / "good.png")
    odd = Path(os.fsdecode(bytes(folder) + b"/caf\xe9.png"))
    odd.write_bytes(good.read_bytes())
    os.symlink("loop", folder / "loop")
    os.mkfifo(folder / "pipe")
    bomb = _webp_bomb(folder / "bomb.webp")
    deep = _deep_file(tmp_path)
    long_name = tmp_path / ("x" * 300 + ".jpg")
    too_long = tmp_path / ("y/" * 2100 + "z.jpg")

    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONIOENCODING": "utf-8"}  # strict: no surrogates pass
    res = subprocess.run([sys.executable, "-m", "deepscreen.cli", "scan", "--json", folder, long_name, too_long,
                          tmp_path / ("d" * 200)], capture_output=True, env=env, timeout=600)
    stdout, stderr = res.stdout.decode("utf-8"), res.stderr.decode("utf-8")  # raises if either is not UTF-8
    assert res.returncode == 2 and "Traceback" not in stderr, stderr
    rows = {r["path"]: r for r in map(json.loads, stdout.splitlines())}
    errors = [line for line in stderr.splitlines() if line.startswith("deepscreen: error:")]

    assert rows[str(good)]["label"] == "inconclusive" and rows[str(good)]["kind"] == "image"
    shown = str(folder) + "/caf\\xe9.png"
    assert rows[shown]["label"] == "inconclusive" and rows[shown]["path_escaped"] is True
    assert "path_escaped" not in rows[str(good)]
    expected = {  # path -> what its one error line says
        str(folder / "loop"): "symbolic link loop",
        str(folder / "pipe"): "not a regular file",
        str(bomb): "image is 16000x16000 = 256 MP, over the 50 MP limit",
        str(long_name): "a name in the path is 304 bytes, over the 255-byte limit",
        str(too_long): f"path is {len(os.fsencode(too_long))} bytes, too long",
        str(deep.parent): "too long",  # os.walk cannot list it: the folder is the error
    }
    for path, reason in expected.items():
        assert rows[path]["label"] == "error" and reason in rows[path]["error"], rows[path]
        mine = [line for line in errors if rows[path]["error"] in line]
        assert len(mine) == 1, (path, errors)
    assert len(errors) == len(expected)


# ---------------------------------------------------------------- long sound, in blocks


@pytest.fixture(scope="module")
def noisy_speechlike(tmp_path_factory) -> Path:
    """Four minutes of syllable-rate noise bursts and pauses as 16-bit WAV (the whole track as float32: 15 MB)."""
    rng = np.random.default_rng(0)
    t = np.arange(240 * 16000) / 16000
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) * (np.sin(2 * np.pi * 0.2 * t) > -0.3)
    x = (0.3 * envelope * rng.standard_normal(len(t))).astype(np.float32)
    return write_audio(tmp_path_factory.mktemp("long") / "bursts.wav", x, "wav")


def test_blocks_are_the_whole_track_and_bounded(noisy_speechlike):
    from deepscreen.config import Limits
    from deepscreen.media.audio import AudioReader, read_audio

    whole = read_audio(noisy_speechlike).samples
    blocks = list(AudioReader(noisy_speechlike).blocks(block_samples=16000 * 7))
    assert np.array_equal(np.concatenate(blocks), whole) and len(whole) == 240 * 16000
    assert len(blocks) > 30 and max(len(b) for b in blocks) < 16000 * 8
    cut = list(AudioReader(noisy_speechlike, Limits(max_duration_s=30.5)).blocks(block_samples=16000 * 7))
    assert sum(map(len, cut)) == int(30.5 * 16000)  # the duration limit cuts inside a block


def test_speech_finder_on_blocks_holds_one_block(noisy_speechlike):
    """VAD over blocks: the same probabilities as over the whole array, while at most a block or two of sound is
    held at any time (numpy reports its buffers to tracemalloc)."""
    import tracemalloc

    from deepscreen.media.audio import AudioReader, read_audio
    from deepscreen.media.speech import SpeechFinder

    finder = SpeechFinder()
    reader = AudioReader(noisy_speechlike)
    tracemalloc.start()
    probs, n = finder.stream_probabilities(reader.blocks(block_samples=16000 * 10))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    whole = read_audio(noisy_speechlike).samples
    assert n == len(whole) and np.array_equal(probs, finder.probabilities(whole))
    assert peak < whole.nbytes / 4, peak  # whole: 15 MB; a 10 s block: 0.6 MB


def test_windows_cut_from_blocks_score_as_from_one_array(noisy_speechlike):
    """Voice scores, segments and timeline from blocks are those of the whole array, to the bit, with segments
    that need windows across block boundaries (short ones padded, long ones many windows)."""
    from deepscreen.detectors.voice import VoiceDetector
    from deepscreen.media.audio import AudioReader, read_audio
    from deepscreen.media.speech import SpeechSegment

    x = read_audio(noisy_speechlike).samples[: 16000 * 100]
    segments = [SpeechSegment(0.2, 0.9), SpeechSegment(3.1, 41.7), SpeechSegment(55.0, 55.4),
                SpeechSegment(60.0, 99.95)]
    det = VoiceDetector()
    blocks = [x[i:i + 16000 * 3 + 17] for i in range(0, len(x), 16000 * 3 + 17)]  # boundaries inside windows
    whole, blocked = det.analyse(x, segments), det.analyse_blocks(iter(blocks), len(x), segments)
    assert blocked == whole and whole.probability is not None and len(whole.timeline) == 100
