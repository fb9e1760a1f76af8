"""Hostile names and hostile media found by fuzzing: each is one error of that file, and the run goes on."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from deepscreen.media import MediaError, probe
from deepscreen.media.errors import shown_path
from deepscreen.scan import expand_paths

from media_factory import gradient


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
